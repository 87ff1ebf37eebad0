import { test } from "node:test";
import assert from "node:assert/strict";

import { javaHashCode, orderingKeyQueue } from "../src/index.js";

// Printed by a JVM (OpenJDK 17), the same values the Rust side is tested against.
const jvm: Array<[string, number]> = [
  ["", 0],
  ["a", 97],
  ["TagA", 2598919],
  ["hello", 99162322],
  ["order-42", 1234255197],
  ["negative-key-zz", -1614302714],
  ["Java hashCode", -1630971847],
  ["polygenelubricants", -2147483648],
  ["\u{1F600}", 1772899],
  ["é", 233],
];

test("javaHashCode matches the JVM", () => {
  for (const [input, expected] of jvm) {
    assert.equal(javaHashCode(input), expected, JSON.stringify(input));
  }
});

test("orderingKeyQueue is abs(hash % n)", () => {
  // -1614302714 % 8 = -2 in Java: queue 2.
  assert.equal(orderingKeyQueue("negative-key-zz", 8), 2);
  assert.equal(orderingKeyQueue("order-42", 8), 1234255197 % 8);
  // Integer.MIN_VALUE % n stays within range.
  assert.equal(orderingKeyQueue("polygenelubricants", 3), Math.abs(-2147483648 % 3));
  assert.throws(() => orderingKeyQueue("k", 0), RangeError);
});
