/**
 * Reciprocal rank fusion (Cormack, Clarke and Buettcher 2009) of ranked candidate lists: a product
 * at rank r (from 1) in a list of weight w gains w / (k + r), and its fused score is the sum over the
 * lists that hold it. Ranks, not scores, are fused, so BM25 and cosine similarity need no common
 * scale. Ties go to the product with the better best rank, then to the earlier list's order, so the
 * order is deterministic.
 */

/** RRF's k when a search does not say (the paper's value; Elasticsearch's and OpenSearch's default). */
export const DEFAULT_RRF_K = 60;
/** Largest rrfK a search may ask for. */
export const MAX_RRF_K = 10_000;
/** Largest weight of a recall list in the fusion. */
export const MAX_RECALL_WEIGHT = 100;

/** One ranked list to fuse: ids best first, and the list's weight. */
export interface RankedList<Id> {
  ids: Id[];
  weight: number;
}

export interface Fused<Id> {
  id: Id;
  score: number;
  /** Rank (from 1) in each list, undefined where the list does not hold the id. */
  ranks: (number | undefined)[];
}

/** The lists fused, best first (see the header); an id repeated in one list counts at its first rank. */
export function reciprocalRankFusion<Id>(lists: RankedList<Id>[], k = DEFAULT_RRF_K): Fused<Id>[] {
  const byId = new Map<Id, Fused<Id> & { best: number; first: number }>();
  lists.forEach((list, li) => {
    list.ids.forEach((id, i) => {
      let f = byId.get(id);
      if (!f) byId.set(id, (f = { id, score: 0, ranks: lists.map(() => undefined), best: Infinity, first: li * 1e9 + i }));
      if (f.ranks[li] !== undefined) return;
      const rank = i + 1;
      f.ranks[li] = rank;
      f.score += list.weight / (k + rank);
      f.best = Math.min(f.best, rank);
    });
  });
  return [...byId.values()]
    .sort((a, b) => b.score - a.score || a.best - b.best || a.first - b.first)
    .map(({ id, score, ranks }) => ({ id, score, ranks }));
}
