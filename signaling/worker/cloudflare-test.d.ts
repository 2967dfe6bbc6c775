// The Worker's own exports as tests inside workerd see them (`import { exports } from 'cloudflare:workers'`).
declare namespace Cloudflare {
  interface Exports { default: Fetcher }
}
