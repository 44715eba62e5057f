// A synchronous Redis client for the component's key-value imports.
//
// A transpiled component calls its imports synchronously, and every Redis client for Node is
// asynchronous. jco's async mode (JSPI) needs a newer Node than many servers run, so the bridge
// is the one preview2-shim uses for outgoing HTTP: a worker thread runs the command, and the
// main thread sleeps in Atomics.wait until the worker posts the answer and wakes it.
import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';

/** How long one command may take before the component is told the store is unavailable. */
const COMMAND_TIMEOUT_MS = 5_000;

export class SyncRedis {
  #signal = new Int32Array(new SharedArrayBuffer(4));
  #port;
  #worker;
  #next = 0;

  /** @param {string} url `redis://…` */
  constructor(url) {
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    this.#worker = new Worker(new URL('./redis-worker.js', import.meta.url), {
      workerData: { url, signal: this.#signal, port: port2 },
      transferList: [port2],
    });
    // The HTTP server keeps the process alive; the bridge must not.
    this.#worker.unref();
    this.#port.unref();
  }

  /** Runs `command` (see redis-worker.js) and returns its answer, or throws its error. */
  call(command, ...args) {
    const id = (this.#next = (this.#next % 0x7fffffff) + 1);
    this.#port.postMessage({ id, command, args });
    const deadline = Date.now() + COMMAND_TIMEOUT_MS;
    // The worker stores the id of each command it has answered, after posting the answer.
    for (let answered; (answered = Atomics.load(this.#signal, 0)) !== id; ) {
      const left = deadline - Date.now();
      if (left <= 0 || Atomics.wait(this.#signal, 0, answered, left) === 'timed-out') {
        // A late answer is told apart by its id and dropped by a later call.
        throw new Error(`Redis did not answer ${command} within ${COMMAND_TIMEOUT_MS} ms`);
      }
    }
    for (let message; (message = receiveMessageOnPort(this.#port)); ) {
      const reply = message.message;
      if (reply.id !== id) continue;
      if (reply.error !== undefined) throw new Error(reply.error);
      return reply.value;
    }
    throw new Error(`the answer to ${command} was lost`);
  }

  close() {
    this.#worker.terminate();
  }
}
