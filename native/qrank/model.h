// A model: what its GGUF file says it is (ModelInfo, read from the metadata alone), its vocabulary
// (llama.cpp's tokenizer, shared by every backend), and, for the llama.cpp engine only, llama.cpp's
// copy of the weights. An engine that brings its own weights (CUDA) loads the model without them:
// the facts and the tokenizer never depend on which engine runs the network.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qrank/gguf_file.h"

struct llama_model;
struct llama_vocab;

namespace qrank {

using Token = int32_t;
using Tokens = std::vector<Token>;

struct ModelInfo {
  std::string path;
  std::string architecture;    // general.architecture, e.g. "qwen3", "bert"
  std::string name;            // general.name
  std::string description;     // architecture, parameter count and weight type, e.g. "qwen3 596M f16"
  std::string pooling;         // pooling declared by the file: none, mean, cls, last, rank
  std::string weight_type;     // the type of most weight bytes: f32, f16, bf16, q8_0, ...
  int64_t context_length = 0;  // the model's trained context (tokens)
  int64_t embedding_length = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;        // attention.key_length (Qwen3: 128, not hidden / heads)
  int64_t ffn_length = 0;
  int64_t vocab_size = 0;
  double rope_theta = 10000.0;
  double rms_eps = 1e-6;
  uint64_t parameters = 0;
  uint64_t size_bytes = 0;                // bytes of the weights in the file
  std::vector<std::string> class_labels;  // classifier output labels (rank models)
  bool causal = true;                     // decoder-only attention (prefix reuse is possible)
  bool synthetic = false;                 // written by qrank make-test-model (random weights)
};

// The facts of a GGUF file, from its metadata and tensor directory (no weights are read).
ModelInfo read_model_info(const GgufFile& file);

// How much of the model llama.cpp loads.
struct ModelLoad {
  bool weights = true;  // false: the vocabulary only (an engine with weights of its own)
  int gpu_layers = 0;   // layers llama.cpp offloads to a GPU (a build with ggml-cuda only)
};

class Model {
 public:
  // Loads the file. `progress` gets 0..1 and may return false to abort (Error kAborted).
  static std::unique_ptr<Model> load(const std::string& path, const std::function<bool(float)>& progress,
                                     const ModelLoad& how = ModelLoad{});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const { return info_; }
  const GgufFile& file() const { return *file_; }
  // llama.cpp's model; it holds weights only when loaded with ModelLoad::weights.
  llama_model* handle() const { return model_; }
  bool has_weights() const { return load_.weights; }
  int gpu_layers() const { return load_.weights ? load_.gpu_layers : 0; }

  // Token ids of `text`. parse_special: control tokens written in the text (<|im_start|>) become
  // their ids, as Hugging Face tokenizers do; add_special: the vocabulary's own BOS/EOS rules.
  Tokens tokenize(const std::string& text, bool parse_special, bool add_special = false) const;
  std::string detokenize(const Tokens& tokens) const;
  // The id of a word that must be exactly one token (e.g. "yes"); throws kBadModel otherwise.
  Token single_token(const std::string& word) const;
  // The id of a special token written as text (e.g. "<|endoftext|>"), or -1 when the vocabulary
  // has no such token.
  Token special_token(const std::string& text) const;
  Token eos() const;
  Token bos() const;
  Token sep() const;
  // String metadata value, or "" when absent.
  std::string meta(const std::string& key) const { return file_->str(key); }

 private:
  Model(llama_model* model, std::shared_ptr<const GgufFile> file, const ModelLoad& load);

  llama_model* model_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  std::shared_ptr<const GgufFile> file_;
  ModelLoad load_;
  ModelInfo info_;
};

// Makes llama.cpp quiet (its log goes to stderr otherwise) and keeps its last error lines, so a
// failed load can say why. QRANK_LOG=1 restores llama.cpp's log.
void init_llama_backend();
std::string last_llama_errors();

}  // namespace qrank
