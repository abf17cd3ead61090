/**
 * Prometheus metrics (prom-client): request latency per route, in-flight requests, queue depth,
 * tokens and sequences scored, prefix tokens reused, search cache hits and misses, and the
 * process's own memory and CPU.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ModelHandle } from '../model-handle';
import type { SearchEngine } from '../search/engine';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requestSeconds = new Histogram({
    name: 'qrank_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({ name: 'qrank_http_requests_in_flight', help: 'requests being served', registers: [this.registry] });
  readonly rejected = new Counter({
    name: 'qrank_http_requests_rejected_total',
    help: 'requests refused by a limit (413, 429)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly tokens = new Counter({ name: 'qrank_tokens_total', help: 'tokens scored or embedded', labelNames: ['model'], registers: [this.registry] });

  constructor(models: Record<string, ModelHandle | undefined>, search?: SearchEngine) {
    collectDefaultMetrics({ register: this.registry, prefix: 'qrank_' });
    const stat = (name: string, help: string, pick: (s: ReturnType<ModelHandle['stats']>) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['model'],
        registers: [this.registry],
        collect() {
          for (const [role, m] of Object.entries(models)) if (m && !m.closed) this.set({ model: role }, pick(m.stats()));
        },
      });
    stat('qrank_queue_depth', 'calls queued or running in the model scheduler', (s) => s.queuedCalls);
    stat('qrank_batches', 'batches run by the engine since start', (s) => s.batches);
    stat('qrank_sequences', 'sequences scored or embedded since start', (s) => s.sequences);
    stat('qrank_tokens_evaluated', 'tokens run through the network since start', (s) => s.tokensEvaluated);
    if (search) {
      const cache = (name: string, help: string, pick: 'hits' | 'misses' | 'size') =>
        new Gauge({
          name,
          help,
          labelNames: ['cache'],
          registers: [this.registry],
          collect() {
            const c = search.cacheStats();
            this.set({ cache: 'query_embeddings' }, c.queryEmbeddings[pick]);
            this.set({ cache: 'rerank_scores' }, c.rerankScores[pick]);
          },
        });
      cache('qrank_search_cache_hits', 'search cache hits since start', 'hits');
      cache('qrank_search_cache_misses', 'search cache misses since start', 'misses');
      cache('qrank_search_cache_entries', 'entries held by each search cache', 'size');
    }
    stat('qrank_tokens_reused', 'prefix tokens served from the KV cache instead of being evaluated again', (s) => s.tokensReused);
  }
}
