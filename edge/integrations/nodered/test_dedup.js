// Unit tests of dedup.js (the function node body) without Node-RED or a broker:
//   node --test test_dedup.js
// The body runs as Node-RED runs it: a function of msg with `node` and
// `context` in scope, returning [accepted, dropped].
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("fs");
const path = require("path");

const body = fs.readFileSync(path.join(__dirname, "dedup.js"), "utf8");
const fn = new Function("msg", "node", "context", body);

// A stand-in for one function node: a context with named stores, warnings collected.
function makeNode() {
    const stores = { file: {}, default: {} };
    const warnings = [];
    const context = {
        get: (k, s = "default") => stores[s][k],
        set: (k, v, s = "default") => { stores[s][k] = v; },
    };
    const node = { warn: (m) => warnings.push(m) };
    const send = (payload) => {
        const [acc, drop] = fn({ topic: "edge/x/counts", payload }, node, context);
        return acc ? "accepted" : drop.payload.reason;
    };
    return { send, stores, warnings };
}
const w = (seq, stream = "s1", device = "d1") => ({ device, stream, seq });

test("accepts each (device, stream, seq) once", () => {
    const n = makeNode();
    assert.deepEqual([1, 2, 3, 2, 1, 4].map((s) => n.send(w(s))),
        ["accepted", "accepted", "accepted", "duplicate", "duplicate", "accepted"]);
    assert.deepEqual(n.stores.file.seen.d1.s1.recent, []);
    assert.equal(n.stores.file.seen.d1.s1.floor, 4);
});

test("out of order within a gap, then the gap fills", () => {
    const n = makeNode();
    assert.deepEqual([1, 3, 5, 3, 2, 4, 5].map((s) => n.send(w(s))),
        ["accepted", "accepted", "accepted", "duplicate", "accepted", "accepted", "duplicate"]);
    assert.equal(n.stores.file.seen.d1.s1.floor, 5);
});

test("a new stream or device starts afresh", () => {
    const n = makeNode();
    assert.equal(n.send(w(1)), "accepted");
    assert.equal(n.send(w(1, "s2")), "accepted");
    assert.equal(n.send(w(1, "s1", "d2")), "accepted");
    assert.equal(n.send(w(1)), "duplicate");
});

test("first window seen mid-stream: earlier seqs count as seen", () => {
    const n = makeNode();
    assert.equal(n.send(w(500)), "accepted");
    assert.equal(n.send(w(499)), "duplicate");
    assert.equal(n.send(w(501)), "accepted");
});

test("a gap that never fills is given up after RECENT_MAX later seqs (bounded state)", () => {
    const n = makeNode();
    n.send(w(1));
    for (let s = 3; s <= 300; s++) assert.equal(n.send(w(s)), "accepted");
    const st = n.stores.file.seen.d1.s1;
    assert.ok(st.recent.length <= 256);
    assert.equal(st.floor, 300);
    assert.equal(n.warnings.length, 1);
    assert.match(n.warnings[0], /seq 2\.\.2/);
    assert.equal(n.send(w(2)), "duplicate"); // too late now
});

test("streams per device are bounded (least recently used forgotten)", () => {
    const n = makeNode();
    for (let i = 0; i < 10; i++) n.send(w(1, "s" + i));
    assert.equal(Object.keys(n.stores.file.seen.d1).length, 8);
});

test("malformed payloads are dropped with a reason", () => {
    const n = makeNode();
    assert.equal(n.send("text"), "not-an-object");
    assert.equal(n.send([1]), "not-an-object");
    assert.equal(n.send({ stream: "s", seq: 1 }), "bad-device");
    assert.equal(n.send({ device: "d", stream: 7, seq: 1 }), "bad-stream");
    assert.equal(n.send({ device: "d", stream: "s", seq: "1" }), "bad-seq");
    assert.equal(n.send({ device: "d", stream: "s", seq: 0 }), "bad-seq");
    assert.equal(n.send({ device: "d", stream: "s", seq: 1.5 }), "bad-seq");
});

test("payloads without stream (older daemons) dedupe under stream ''", () => {
    const n = makeNode();
    assert.equal(n.send({ device: "d", seq: 1 }), "accepted");
    assert.equal(n.send({ device: "d", seq: 1 }), "duplicate");
    assert.ok("" in n.stores.file.seen.d);
});
