// Preloaded into kinesis-mock (`node --require loopback.cjs main.js`) by the emulator runner.
//
// kinesis-mock hard-codes 0.0.0.0 as its listen address and has no option to change it. Test servers must listen on
// the loopback interface only, so this rewrites the host of every TCP `listen` call (plain, TLS and HTTP/2 servers
// all go through net.Server) to 127.0.0.1. Unix-socket and handle listens are left alone.
'use strict';
const net = require('node:net');

const LOOPBACK = '127.0.0.1';
const listen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function loopbackListen(...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !Array.isArray(first) && first.path === undefined &&
      first.handle === undefined && first.fd === undefined && !(first instanceof net.Server)) {
    args[0] = { ...first, host: LOOPBACK, ipv6Only: false };
  } else if (isPort(first) || first === undefined || typeof first === 'function') {
    // listen(), listen(cb), listen(port[, host][, backlog][, cb])
    if (!isPort(first)) args.unshift(0);
    if (typeof args[1] === 'string') args[1] = LOOPBACK;
    else args.splice(1, 0, LOOPBACK);
  }
  return listen.apply(this, args);
};
