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
/**
 * Policy between the clusters that export one share name (on the exported Service or its
 * ServiceExport; the ServiceExport's win), announced to importers (protocol/peer.ts ShareInfo):
 * `round-robin` (default), `least-loaded` or `nearest` (lowest RTT).
 */
export const BALANCE_ANNOTATION = 'causeway.dev/balance'
/** `local-first`: an importing cluster where the same Service has ready endpoints uses those; remote clusters only when it has none. */
export const FAILOVER_ANNOTATION = 'causeway.dev/failover'
/** This cluster's relative share of the streams (0-1000, default 1; 0: only when no other cluster can take them). */
export const WEIGHT_ANNOTATION = 'causeway.dev/weight'
/** This cluster's failover order (0-100, lower first, default 0): higher ones get streams only when no lower one can. */
export const PRIORITY_ANNOTATION = 'causeway.dev/priority'
/** `"true"` on a (headless) Service: one sub-share per ready pod, imported as one Service per pod (per-pod addressing). */
export const PODS_ANNOTATION = 'causeway.dev/pods'
/** Label on merged imports (one Service for a share name exported by any number of clusters): the share name. */
export const MERGED_IMPORT_LABEL = 'causeway.dev/merged'
/** Label on the per-pod Services of a merged import: the pod name. */
export const IMPORT_POD_LABEL = 'causeway.dev/pod'
