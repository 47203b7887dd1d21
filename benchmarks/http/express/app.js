// The baseline of benchmarks/http/run.sh: the products list behind the response-caching
// middleware as it is usually written for Express and ioredis. A GET looks in Redis: on a hit it
// answers res.json(JSON.parse(cached)); on a miss it wraps res.json so that the body is stored
// with SETEX once the route answers. A write DELetes the lists it changes. The "database" is the
// products of the C++ service (read from PRODUCTS_FILE) behind a DELAY_MS timer, so that both
// servers send the same bytes after the same delay.
//
//   PORT=8081 REDIS_PORT=6379 PRODUCTS_FILE=products.json DELAY_MS=200 node app.js
'use strict';

const fs = require('fs');
const express = require('express');
const Redis = require('ioredis');

const port = Number(process.env.PORT);
const delayMs = Number(process.env.DELAY_MS || 200);
const ttlSeconds = 600;
const redis = new Redis({ host: '127.0.0.1', port: Number(process.env.REDIS_PORT) });
const products = JSON.parse(fs.readFileSync(process.env.PRODUCTS_FILE, 'utf8'));
let nextId = products.reduce((max, p) => Math.max(max, p.id), 0) + 1;
let queries = 0;

// A database query: counted, and answered after delayMs.
function query(run) {
  queries += 1;
  return new Promise((resolve) => setTimeout(() => resolve(run()), delayMs));
}

function cacheResponse(ttl) {
  return async (req, res, next) => {
    const key = `cache:${req.originalUrl}`;
    try {
      const cached = await redis.get(key);
      if (cached) {
        res.set('X-Cache', 'HIT');
        return res.json(JSON.parse(cached));
      }
    } catch (err) {
      return next();
    }
    res.set('X-Cache', 'MISS');
    const send = res.json.bind(res);
    res.json = (body) => {
      redis.setex(key, ttl, JSON.stringify(body)).catch(() => {});
      return send(body);
    };
    return next();
  };
}

const app = express();

app.get('/api/products', cacheResponse(ttlSeconds), async (req, res) => {
  const { category } = req.query;
  const list = await query(() =>
    category ? products.filter((p) => p.category === category) : products.slice());
  res.json(list);
});

app.post('/api/products', express.json(), async (req, res) => {
  const { name, category, price } = req.body;
  const product = await query(() => {
    const created = { category, id: nextId, name, price };
    nextId += 1;
    products.push(created);
    return created;
  });
  await redis.del('cache:/api/products',
    `cache:/api/products?category=${encodeURIComponent(category)}`);
  res.status(201).location(`/api/products/${product.id}`).json(product);
});

app.get('/stats', (req, res) => res.json({ queries }));

app.listen(port, '127.0.0.1', () => console.log(`express baseline on 127.0.0.1:${port}`));
