// The guide's Express stack, as its libraries' documentation sets it up: the yardstick that
// bench/run measures bastion against. Not part of bastion; never run in production.
//
//   helmet (default headers) + cors (exact origin list, credentials) + express.json (64 KiB)
//   + express-slow-down and express-rate-limit on /api/ (draft-8 and legacy headers)
//   + jsonwebtoken verifying ES256 access tokens (algorithms pinned, issuer and audience).
//
// Limits are set out of reach (the bench measures the decisions, never a 429 or a delay).
// Settings come from the environment (bench/run sets them):
//   PORT, PUBLIC_KEY_FILE (PEM of the ES256 verification key), ISSUER, AUDIENCE,
//   USER_ID, USER_EMAIL (the one account /api/v1/me knows; an in-memory Map stands in for
//   the database, so this peer does no I/O per request).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const express = require('express');
const helmet = require('helmet');
const cors = require('cors');
const { rateLimit } = require('express-rate-limit');
const { slowDown } = require('express-slow-down');
const jwt = require('jsonwebtoken');

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};

const port = Number(env('PORT'));
// A KeyObject, parsed once (jsonwebtoken would parse a PEM string on every verify).
const publicKey = crypto.createPublicKey(fs.readFileSync(env('PUBLIC_KEY_FILE')));
const issuer = env('ISSUER');
const audience = env('AUDIENCE');
const users = new Map([[env('USER_ID'), { email: env('USER_EMAIL'), role: 'user' }]]);

const OUT_OF_REACH = 1_000_000_000;
const WINDOW_MS = 15 * 60 * 1000;

const app = express();
app.disable('x-powered-by');
app.use(helmet());
app.use(
  cors({
    origin: ['https://app.example.com'],
    credentials: true,
    methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['Content-Type', 'Authorization', 'X-Request-ID'],
    exposedHeaders: ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'Retry-After', 'RateLimit',
      'RateLimit-Policy', 'X-Request-ID'],
    maxAge: 86400,
  }),
);
app.use(express.json({ limit: '64kb' }));
app.use(
  '/api/',
  slowDown({
    windowMs: WINDOW_MS,
    delayAfter: OUT_OF_REACH,
    delayMs: (used) => (used - OUT_OF_REACH) * 200,
  }),
);
app.use(
  '/api/',
  rateLimit({
    windowMs: WINDOW_MS,
    limit: OUT_OF_REACH,
    standardHeaders: 'draft-8',
    legacyHeaders: true,
  }),
);

function authenticate(req, res, next) {
  const header = req.get('authorization') || '';
  const match = /^Bearer +(\S+)$/i.exec(header);
  if (!match) {
    res.set('WWW-Authenticate', 'Bearer').status(401).json({ error: 'Unauthorized' });
    return;
  }
  try {
    req.claims = jwt.verify(match[1], publicKey, {
      algorithms: ['ES256'],
      issuer,
      audience,
    });
  } catch {
    res
      .set('WWW-Authenticate', 'Bearer error="invalid_token"')
      .status(401)
      .json({ error: 'Unauthorized' });
    return;
  }
  next();
}

app.get('/api/v1/ping', (req, res) => {
  res.json({ pong: true });
});

app.get('/api/v1/me', authenticate, (req, res) => {
  const user = users.get(req.claims.sub);
  if (!user) {
    res.set('WWW-Authenticate', 'Bearer error="invalid_token"').status(401).json({ error: 'Unauthorized' });
    return;
  }
  res.json({ id: req.claims.sub, email: user.email, role: user.role });
});

app.listen(port, '127.0.0.1');
