// The benchmark app on Node.js socket.io 4.8 (the peer of bench/apps/rtserver_app.py).
// Usage: node server.js PORT SECRET [REDIS_URL]
// With REDIS_URL the server is one node of a cluster: @socket.io/redis-adapter 8
// (the classic pub/sub adapter) on the redis 4 client, the reference rtserver's
// [cluster] speaks with.
'use strict';
const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || 3001);
const secret = process.argv[3] || '';
const redisUrl = process.argv[4] || '';

// HS256 verification with node:crypto (the same work rtserver's guard does with pyjwt).
function verify(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  const mac = crypto.createHmac('sha256', secret).update(parts[0] + '.' + parts[1]).digest();
  const sig = Buffer.from(parts[2], 'base64url');
  if (sig.length !== mac.length || !crypto.timingSafeEqual(sig, mac)) return null;
  const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
  if (header.alg !== 'HS256') return null;
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  if (typeof claims.exp !== 'number' || claims.exp < Date.now() / 1000) return null;
  return claims;
}

const httpServer = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const io = new Server(httpServer, { pingInterval: 10000, pingTimeout: 20000, maxHttpBufferSize: 1e6 });

async function joinCluster() {
  if (!redisUrl) return;
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient));
}

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) return next(new Error('token_invalid'));
  socket.data.user = claims.sub;
  next();
});

io.on('connection', (socket) => {
  socket.on('join', (room, ack) => { socket.join(room); if (typeof ack === 'function') ack('ok'); });
  socket.on('publish', (room, data) => { io.to(room).emit('msg', data); });
  socket.on('echo', (...args) => { const ack = args.pop(); if (typeof ack === 'function') ack(...args); });
});

joinCluster().then(() => httpServer.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`)));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
