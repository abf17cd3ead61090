/**
 * qrank: in-process multilingual search core. Typed API over the native addon.
 */
export { Reranker } from './reranker';
export type { RerankOptions, RerankResult, ScoreOptions, Pair, RerankUsage } from './reranker';
export { Embedder } from './embedder';
export type { EmbedOptions, TextKind } from './embedder';
export { cudaStatus, inspectModel } from './model-handle';
export type { LoadOptions, ModelInfo, ModelStats, ModelDescription, Device, CudaStatus } from './model-handle';
export { VectorIndex } from './vector-index';
export type { IndexOptions, IndexSearchOptions, IndexHits, IndexKind, IndexDevice, Metric, Ids, VectorStorage } from './vector-index';
export { SearchEngine } from './search/engine';
export type { SearchOptions, SearchHit, SearchResponse, CacheStats, RecallMode, RecallExplain, RecallFusion } from './search/engine';
export { Collection } from './search/collection';
export type { Mapping, IngestOptions, IngestProgress, IngestResult, KeywordBuildProgress } from './search/collection';
export type { KeywordColumn } from './search/mapping';
export { reciprocalRankFusion } from './search/fusion';
export { keywordTerms, queryTerms } from './search/keyword-text';
export type { Filter } from './search/filters';
export { QrankError } from './errors';
export type { QrankErrorCode } from './errors';
