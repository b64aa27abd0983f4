// A service that signs people in through DigiOne Login with openid-client (npm install openid-client@6).
// DIGIONE_ISSUER=https://<broker> CLIENT_ID=my-app CLIENT_SECRET=... REDIRECT_URI=https://my-app.example/callback
// PORT=3000 node rp.mjs; then open /login. /callback shows what the service got, as JSON.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import * as client from 'openid-client';

const env = process.env;
const issuer = new URL(env.DIGIONE_ISSUER);
const redirectUri = new URL(env.REDIRECT_URI);
// Plain http only for a broker on this machine (the tests' demo broker).
const local = issuer.protocol === 'http:' && issuer.hostname === 'localhost';
// The broker's registrations default to client_secret_basic; openid-client's default is client_secret_post.
const config = await client.discovery(issuer, env.CLIENT_ID, undefined, client.ClientSecretBasic(env.CLIENT_SECRET),
  local ? { execute: [client.allowInsecureRequests] } : undefined);
const logins = new Map(); // login cookie -> { verifier, state, nonce }, for the minutes a login takes

async function login(res) {
  const id = randomUUID();
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  logins.set(id, { verifier, state, nonce });
  setTimeout(() => logins.delete(id), 10 * 60 * 1000).unref();
  const target = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri.href, scope: 'openid roles schools profile', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const secure = redirectUri.protocol === 'https:' ? '; Secure' : '';
  res.writeHead(302, { Location: target.href, 'Set-Cookie': `login=${id}; Path=/; HttpOnly; SameSite=Lax${secure}` });
  res.end();
}

async function callback(req, res, url) {
  const id = /(?:^|;\s*)login=([\w-]+)/.exec(req.headers.cookie ?? '')?.[1];
  const pending = logins.get(id);
  logins.delete(id);
  if (!pending) {
    res.writeHead(400, { 'Content-Type': 'text/plain' }).end('No sign-in in progress: start again at /login\n');
    return;
  }
  // Checks state, the ID token's signature (the broker's JWKS), iss, aud, nonce and expiry.
  const tokens = await client.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: pending.verifier, expectedState: pending.state, expectedNonce: pending.nonce,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  // roles is a list of role names: what the application decides on.
  const teacher = (claims.roles ?? []).includes('teacher');
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify({ claims, userinfo, teacher }, null, 1));
}

createServer(async (req, res) => {
  const url = new URL(req.url, redirectUri);
  try {
    if (url.pathname === '/login') await login(res);
    else if (url.pathname === redirectUri.pathname) await callback(req, res, url);
    else res.writeHead(404).end();
  } catch (error) {
    console.error(error);
    res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`Sign-in failed: ${error.code ?? error.name}\n`);
  }
}).listen(Number(env.PORT ?? 3000), '127.0.0.1');
