DROP TABLE par_requests;
