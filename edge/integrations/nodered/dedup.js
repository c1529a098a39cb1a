// Body of the "dedup (device, stream, seq)" function node.
// build_flow.py embeds this file into edge-windows.flow.json; edit it here.
//
// Input:  msg.payload = one parsed window from edge/<device>/counts.
// Output 1: the window, unchanged, the first time its (device, stream, seq) is seen.
// Output 2: a drop record {reason, topic, device, stream, seq} for duplicates
//           and malformed payloads (tests/test_nodered.py waits on these; in
//           production wire it to a debug/log node or leave EDGE_DROPPED unset).
//
// State lives in the persistent "file" context store (settings.js), so a
// window redelivered after a Node-RED restart is still recognised. Per
// (device, stream) it is bounded:
//   floor  - every seq <= floor counts as seen (accepted, or given up on);
//   recent - sorted seqs > floor that were accepted (gaps below them are open);
//   t      - last acceptance time (ms), used to forget old streams.
// The daemon numbers windows 1, 2, 3... per stream and sends them in order,
// so recent is normally empty or tiny; a gap (a seq lost for good, e.g. taken
// just before a crash) is held open until RECENT_MAX later seqs have arrived,
// then given up on with a warning.

const STORE = "file";           // context store name from settings.js
const KEY = "seen";             // node-context key: {device: {stream: {floor, recent, t}}}
const RECENT_MAX = 256;         // seqs above the floor remembered per (device, stream)
const STREAMS_PER_DEVICE = 8;   // streams remembered per device (least recently used forgotten)

const w = msg.payload;

function drop(reason, fields) {
    msg.payload = Object.assign({ reason: reason, topic: msg.topic }, fields);
    return [null, msg];
}

if (w === null || typeof w !== "object" || Array.isArray(w)) {
    return drop("not-an-object", {});
}
const device = w.device;
// Payloads from daemons older than the stream field dedupe under stream "".
const stream = w.stream === undefined ? "" : w.stream;
const seq = w.seq;
const ids = { device: device, stream: stream, seq: seq };
if (typeof device !== "string" || device === "") return drop("bad-device", ids);
if (typeof stream !== "string") return drop("bad-stream", ids);
if (!Number.isSafeInteger(seq) || seq < 1) return drop("bad-seq", ids);

// With the store's in-memory cache this get/set is synchronous; set() marks
// the node's scope dirty and it is written within flushInterval.
const seen = context.get(KEY, STORE) || {};
const streams = seen[device] || (seen[device] = {});
let st = streams[stream];
if (!st) {
    // First window of a (device, stream) seen here: start counting just below
    // it, so a consumer deployed mid-stream does not wait for seqs 1..seq-1.
    st = streams[stream] = { floor: seq - 1, recent: [] };
}

if (seq <= st.floor || st.recent.includes(seq)) {
    return drop("duplicate", ids);
}

// Accept: remember seq, then fold contiguous seqs into the floor.
let i = st.recent.findIndex(function (s) { return s > seq; });
st.recent.splice(i < 0 ? st.recent.length : i, 0, seq);
function fold() {
    while (st.recent.length && st.recent[0] === st.floor + 1) {
        st.floor = st.recent.shift();
    }
}
fold();
while (st.recent.length > RECENT_MAX) {
    // Too many seqs above a gap: give the gap up (later arrivals in it are
    // dropped as duplicates) so the state stays bounded.
    const next = st.recent.shift();
    node.warn("dedup: gave up waiting for " + device + "/" + stream + " seq " + (st.floor + 1) + ".." + (next - 1));
    st.floor = next;
    fold();
}
st.t = Date.now();

// Forget the least recently used streams of this device beyond the bound
// (a device gets a new stream each time its state directory is recreated).
const names = Object.keys(streams);
if (names.length > STREAMS_PER_DEVICE) {
    names.sort(function (a, b) { return (streams[a].t || 0) - (streams[b].t || 0); });
    names.slice(0, names.length - STREAMS_PER_DEVICE).forEach(function (n) { delete streams[n]; });
}

context.set(KEY, seen, STORE);
return [msg, null];
