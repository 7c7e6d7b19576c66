// A FAPI 2.0 relying party written with openid-client (not by this project), driven by
// tests/e2e/interop.rs over stdin/stdout:
//   prints  JWKS <public keys>   then waits for a line (the client is registered)
//   prints  AUTH <url>           then waits for the callback URL (the citizen logged in)
//   prints  RESULT <json>        after the code grant and UserInfo, both with DPoP
// Arguments: issuer, client id, redirect URI.
import * as client from 'openid-client';
import * as readline from 'node:readline';

const [issuer, clientId, redirectUri] = process.argv.slice(2);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value;

const { privateKey, publicKey } = await crypto.subtle.generateKey(
  { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
const jwk = await crypto.subtle.exportKey('jwk', publicKey);
const kid = 'rp-key-1';
console.log('JWKS ' + JSON.stringify({ keys: [{ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid, alg: 'ES256', use: 'sig' }] }));
await next();

const config = await client.discovery(
  new URL(issuer), clientId, { id_token_signed_response_alg: 'ES256' },
  client.PrivateKeyJwt({ key: privateKey, kid }),
  { execute: [client.allowInsecureRequests] });
const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const url = await client.buildAuthorizationUrlWithPAR(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
}, { DPoP: dpop });
console.log('AUTH ' + url.href);

const callback = new URL(await next());
const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce,
}, undefined, { DPoP: dpop });
const claims = tokens.claims();
const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP: dpop });
console.log('RESULT ' + JSON.stringify({
  token_type: tokens.token_type, sub: claims.sub, acr: claims.acr, amr: claims.amr,
  userinfo_sub: info.sub, name: info.name,
}));
process.exit(0);
