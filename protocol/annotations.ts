/**
 * Kubernetes annotation and label keys causeway reads and writes. Documented in the README.
 */
export const ANNOTATION_PREFIX = 'causeway.dev/'
/** `"true"` on a Service shares it with the network. */
export const SHARE_ANNOTATION = 'causeway.dev/share'
/** Comma-separated port names or numbers to share (default: all TCP ports). */
export const PORTS_ANNOTATION = 'causeway.dev/ports'
/** Comma-separated peer (cluster) names allowed to import it (default: every peer). */
export const PEERS_ANNOTATION = 'causeway.dev/peers'
/**
 * The name the share is published under (default: `<service>` in the `default` namespace, else
 * `<namespace>-<service>`). A Service with several shared ports publishes one share per port,
 * named `<name>-<port name>` (`<name>-<port number>` for an unnamed port).
 */
export const NAME_ANNOTATION = 'causeway.dev/name'
/** Written by causeway: JSON status of an export or import (peer, path, last error). */
export const STATUS_ANNOTATION = 'causeway.dev/status'
/** Label on objects causeway created; it never touches objects without it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY_VALUE = 'causeway'
/** Labels on imports naming where they came from. */
export const IMPORT_PEER_LABEL = 'causeway.dev/peer'
export const IMPORT_SHARE_LABEL = 'causeway.dev/import'
