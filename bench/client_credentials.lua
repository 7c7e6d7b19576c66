-- wrk script: client_credentials grants with client_secret_basic (the demo e-service).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
-- base64("demo-eservice:demo-eservice-secret")
wrk.headers["Authorization"] = "Basic ZGVtby1lc2VydmljZTpkZW1vLWVzZXJ2aWNlLXNlY3JldA=="
wrk.body = "grant_type=client_credentials"

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p99_ms=%.2f requests=%d errors_non200=%d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.status))
end
