// The vector-recall benchmark's data (bench/ann_bench.cc): a generator of embedding-like vectors,
// their exact neighbours and their statistics. Deterministic by seed; nothing of it is committed.
//
// "realistic": an anisotropic Gaussian mixture in a low-dimensional subspace, projected to `dim`,
// plus isotropic noise, L2-normalised:
//   - a latent space of `latent` (16-64) dimensions whose axes have a decaying spread (axis j has
//     standard deviation (j + 1)^-decay), embedded in R^dim by a random orthonormal basis;
//   - `clusters` components with Zipf-distributed weights (exponent 0.8: the largest cluster is a few
//     hundred times the smallest) and centres drawn from the latent distribution;
//   - each component anisotropic: its own random rotation of the latent axes and per-axis scales
//     (spread * (j + 1)^-decay * lognormal(0, 0.5));
//   - a common offset shared by every vector (`offset` times the signal's norm, along a random
//     direction): embeddings of text are anisotropic, random pairs have a positive mean cosine;
//   - noise: isotropic Gaussian in all `dim` dimensions, its total variance `noise`^2 times the
//     signal's;
//   - queries drawn from the same distribution with another stream of the generator, never indexed.
// "uniform": every coordinate uniform in [-0.5, 0.5), then normalised: the worst case (no
// neighbourhood structure; all distances concentrate).
// Vector i depends only on (seed, i): any chunk is generated without the others.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace annbench {

struct DataSpec {
  std::string kind = "realistic";  // or "uniform"
  size_t n = 100000;
  size_t queries = 1000;
  size_t dim = 1024;
  size_t latent = 48;
  size_t clusters = 1000;
  double decay = 0.3;    // latent axis j has standard deviation (j + 1)^-decay
  double spread = 0.35;  // a cluster's scale relative to the spread of the centres
  double offset = 0.5;   // a common direction every vector shares (embeddings' anisotropy), relative to the signal
  double noise = 0.5;    // noise standard deviation relative to the signal's (over all dimensions)
  uint64_t seed = 1;

  std::string id() const {  // names the cache files
    return kind + "-n" + std::to_string(n) + "-q" + std::to_string(queries) + "-d" + std::to_string(dim) +
           (kind == "realistic" ? "-r" + std::to_string(latent) + "-c" + std::to_string(clusters) + "-a" +
                                      std::to_string(static_cast<int>(decay * 1000)) + "-s" + std::to_string(static_cast<int>(spread * 1000)) +
                                      "-o" + std::to_string(static_cast<int>(offset * 1000)) + "-e" + std::to_string(static_cast<int>(noise * 1000))
                                : std::string()) +
           "-seed" + std::to_string(seed);
  }
};

// splitmix64: seeds and one-off draws.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// xoshiro256+ with Gaussian draws (Box-Muller, both values used).
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = seed = mix64(seed);
  }
  uint64_t next() {
    const uint64_t result = s_[0] + s_[3];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = (s_[3] << 45) | (s_[3] >> 19);
    return result;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  float normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u = uniform(), v = uniform();
    if (u < 1e-300) u = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u));
    spare_ = static_cast<float>(r * std::sin(2 * M_PI * v));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2 * M_PI * v));
  }

 private:
  uint64_t s_[4];
  float spare_ = 0;
  bool has_spare_ = false;
};

inline void normalise(float* x, size_t dim) {
  double norm = 0;
  for (size_t j = 0; j < dim; ++j) norm += static_cast<double>(x[j]) * x[j];
  const float inv = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.0f;
  for (size_t j = 0; j < dim; ++j) x[j] *= inv;
}

// Rows of a random orthonormal matrix (Gram-Schmidt on Gaussian rows).
inline std::vector<float> orthonormal_rows(size_t rows, size_t cols, Rng& rng) {
  std::vector<float> m(rows * cols);
  for (auto& v : m) v = rng.normal();
  for (size_t i = 0; i < rows; ++i) {
    float* r = m.data() + i * cols;
    for (size_t p = 0; p < i; ++p) {
      const float* q = m.data() + p * cols;
      double dot = 0;
      for (size_t j = 0; j < cols; ++j) dot += static_cast<double>(r[j]) * q[j];
      for (size_t j = 0; j < cols; ++j) r[j] -= static_cast<float>(dot) * q[j];
    }
    normalise(r, cols);
  }
  return m;
}

class Generator {
 public:
  explicit Generator(const DataSpec& spec) : s_(spec) {
    if (s_.kind != "realistic") return;
    Rng rng(mix64(s_.seed ^ 0x5eedULL));
    const size_t r = s_.latent, c = s_.clusters;
    basis_ = orthonormal_rows(r + 1, s_.dim, rng);  // the last row: the common direction
    axis_.resize(r);
    for (size_t j = 0; j < r; ++j) axis_[j] = static_cast<float>(std::pow(j + 1.0, -s_.decay));
    // Zipf weights over a random order of the clusters
    std::vector<double> w(c);
    for (size_t i = 0; i < c; ++i) w[i] = std::pow(static_cast<double>(i + 1), -0.8);
    for (size_t i = c; i > 1; --i) std::swap(w[i - 1], w[rng.next() % i]);
    cdf_.resize(c);
    std::partial_sum(w.begin(), w.end(), cdf_.begin());
    for (auto& x : cdf_) x /= cdf_.back();
    centres_.resize(c * r);
    for (size_t i = 0; i < c; ++i)
      for (size_t j = 0; j < r; ++j) centres_[i * r + j] = rng.normal() * axis_[j];
    rotations_.resize(c * r * r);
    scales_.resize(c * r);
    for (size_t i = 0; i < c; ++i) {
      std::vector<float> rot = orthonormal_rows(r, r, rng);
      std::copy(rot.begin(), rot.end(), rotations_.begin() + i * r * r);
      for (size_t j = 0; j < r; ++j) scales_[i * r + j] = static_cast<float>(s_.spread * axis_[j] * std::exp(0.5 * rng.normal()));
    }
    // the signal's mean squared norm decides the noise level
    double signal = 0;
    for (size_t j = 0; j < r; ++j) signal += axis_[j] * axis_[j] * (1.0 + s_.spread * s_.spread * std::exp(0.5));
    noise_sd_ = static_cast<float>(s_.noise * std::sqrt(signal / s_.dim));
    offset_ = static_cast<float>(s_.offset * std::sqrt(signal));
  }

  const DataSpec& spec() const { return s_; }

  // Base vectors [first, first + count) into out (count x dim).
  void base(size_t first, size_t count, float* out) const {
    for (size_t i = 0; i < count; ++i) vector(mix64(s_.seed * 0x100000001b3ULL + first + i), out + i * s_.dim);
  }
  void queries(float* out) const {
    for (size_t i = 0; i < s_.queries; ++i) vector(mix64(~(s_.seed * 0x100000001b3ULL) - i), out + i * s_.dim);
  }
  // Which cluster a base vector came from (for statistics only).
  size_t cluster_of(size_t i) const {
    Rng rng(mix64(s_.seed * 0x100000001b3ULL + i));
    return pick_cluster(rng);
  }

 private:
  size_t pick_cluster(Rng& rng) const {
    return std::min(cdf_.size() - 1, static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), rng.uniform()) - cdf_.begin()));
  }

  void vector(uint64_t seed, float* x) const {
    Rng rng(seed);
    const size_t d = s_.dim;
    if (s_.kind != "realistic") {
      for (size_t j = 0; j < d; ++j) x[j] = static_cast<float>(rng.uniform() - 0.5);
      return normalise(x, d);
    }
    const size_t r = s_.latent;
    const size_t c = pick_cluster(rng);
    float g[256], z[256];
    for (size_t j = 0; j < r; ++j) g[j] = rng.normal() * scales_[c * r + j];
    const float* rot = rotations_.data() + c * r * r;
    for (size_t j = 0; j < r; ++j) {
      float acc = centres_[c * r + j];
      for (size_t t = 0; t < r; ++t) acc += rot[t * r + j] * g[t];
      z[j] = acc;
    }
    const float* common = basis_.data() + r * d;
    for (size_t j = 0; j < d; ++j) x[j] = noise_sd_ * rng.normal() + offset_ * common[j];
    for (size_t t = 0; t < r; ++t) {
      const float* b = basis_.data() + t * d;
      for (size_t j = 0; j < d; ++j) x[j] += z[t] * b[j];
    }
    normalise(x, d);
  }

  DataSpec s_;
  std::vector<float> basis_, axis_, centres_, rotations_, scales_;
  std::vector<double> cdf_;
  float noise_sd_ = 0, offset_ = 0;
};

// The filters of the benchmark: an id passes a filter of selectivity s when its hash falls below
// s (independent of the clusters).
inline bool allowed(int64_t id, double selectivity) {
  return static_cast<double>(mix64(static_cast<uint64_t>(id) ^ 0xf11e7ULL) % 1000000) < selectivity * 1e6;
}

}  // namespace annbench
