/**
 * Java's `String.hashCode()` and the queue an ordering key maps to.
 *
 * The gateway pins a message with `Tern-Ordering-Key: K` to queue `abs(javaHashCode(K) % n)`,
 * exactly like RocketMQ's `SelectMessageQueueByHash`. Exposing the same function here lets a web
 * backend know which queue (and so which FIFO consumer) a key lands on without asking the broker.
 */

/** `s.hashCode()` as the JVM computes it: over UTF-16 code units, wrapping at 32 bits. */
export function javaHashCode(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) {
    // JavaScript strings are UTF-16 already; Math.imul and `| 0` give Java's int overflow.
    h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  }
  return h;
}

/** The queue index (0-based, over the topic's write queues) for an ordering key. */
export function orderingKeyQueue(key: string, queueCount: number): number {
  if (!Number.isInteger(queueCount) || queueCount <= 0) {
    throw new RangeError(`queueCount must be a positive integer, got ${queueCount}`);
  }
  // Java's `%` keeps the dividend's sign, as JavaScript's does; then abs.
  return Math.abs(javaHashCode(key) % queueCount);
}
