/**
 * Node-RED settings for running edge-windows.flow.json headless (tests/test_nodered.py, or
 * a dedicated consumer process).
 *
 * Started as:
 *   node node_modules/node-red/red.js --settings settings.js --userDir <dir> <dir>/edge-windows.flow.json
 *
 * Everything that differs between runs (broker address, output files, where
 * the persistent context lives) comes from environment variables, so this
 * file is shared by every run and never edited per run. In an existing
 * Node-RED, only the "file" context store below is needed (see README.md).
 */
module.exports = {
    // Headless: with both roots false (and no httpStatic) Node-RED starts no
    // HTTP server at all: no editor, no admin API, no port to allocate or
    // collide on, so --port is not needed. The flow file is the only way to
    // change the flows, which is what a test wants. (httpRoot: false does the
    // same but logs a deprecation warning.)
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,

    // The flow holds no credentials; do not generate/encrypt a credentials file.
    credentialSecret: false,

    // Never reach out (update checks) from a test machine.
    telemetry: { enabled: false },
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },

    // Reconnect quickly if the broker is restarted under us (default 5000 ms).
    mqttReconnectTime: 500,

    logging: {
        console: {
            level: process.env.NODE_RED_LOG_LEVEL || "info",
            metrics: false,
            audit: false,
        },
    },

    // Two context stores:
    //  - "default" (memory): scratch state nobody needs after a restart.
    //  - "file" (localfilesystem): the de-duplication state. It is cached in
    //    memory (synchronous get/set in function nodes) and written to
    //    <dir>/context/<flow id>/<node id>.json at most `flushInterval` seconds
    //    after a change, and always on a clean stop (SIGTERM/SIGINT). A SIGKILL
    //    or crash loses at most the last flushInterval of updates, i.e. a window
    //    accepted in that time could be accepted again after a redelivery.
    contextStorage: {
        default: { module: "memory" },
        file: {
            module: "localfilesystem",
            config: Object.assign(
                { flushInterval: Number(process.env.EDGE_CONTEXT_FLUSH_S || 1) },
                // Default location is <userDir>/context; EDGE_CONTEXT_DIR moves it
                // to <EDGE_CONTEXT_DIR>/context (e.g. a volume that outlives userDir).
                process.env.EDGE_CONTEXT_DIR ? { dir: process.env.EDGE_CONTEXT_DIR } : {},
            ),
        },
    },

    // Expose nothing from process.env via global context.
    exportGlobalContextKeys: false,
    functionExternalModules: false,
};
