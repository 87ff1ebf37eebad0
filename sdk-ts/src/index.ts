/**
 * Tern TypeScript SDK.
 *
 * Today this package holds the ordering-key helpers; the HTTP client arrives with the gateway
 * (see the repository's README for the project's status).
 */
export { javaHashCode, orderingKeyQueue } from "./javaHash.js";
