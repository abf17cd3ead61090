// A loaded GGUF model: the llama.cpp handle, its vocabulary, and what qrank reads from its metadata.
// Tokenisation lives here so that every backend (llama.cpp today, CUDA later) shares one tokenizer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct llama_model;
struct llama_vocab;

namespace qrank {

using Token = int32_t;
using Tokens = std::vector<Token>;

struct ModelInfo {
  std::string path;
  std::string architecture;    // general.architecture, e.g. "qwen3", "bert"
  std::string name;            // general.name
  std::string description;     // llama.cpp's one-line description (type, size, quantisation)
  std::string pooling;         // pooling declared by the file: none, mean, cls, last, rank
  int64_t context_length = 0;  // the model's trained context (tokens)
  int64_t embedding_length = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t vocab_size = 0;
  uint64_t parameters = 0;
  uint64_t size_bytes = 0;
  std::vector<std::string> class_labels;  // classifier output labels (rank models)
  bool causal = true;                     // decoder-only attention (prefix reuse is possible)
  bool synthetic = false;                 // written by qrank make-test-model (random weights)
};

class Model {
 public:
  // Loads the file. `progress` gets 0..1 and may return false to abort (Error kAborted).
  static std::unique_ptr<Model> load(const std::string& path, const std::function<bool(float)>& progress);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelInfo& info() const { return info_; }
  llama_model* handle() const { return model_; }

  // Token ids of `text`. parse_special: control tokens written in the text (<|im_start|>) become
  // their ids, as Hugging Face tokenizers do; add_special: the vocabulary's own BOS/EOS rules.
  Tokens tokenize(const std::string& text, bool parse_special, bool add_special = false) const;
  std::string detokenize(const Tokens& tokens) const;
  // The id of a word that must be exactly one token (e.g. "yes"); throws kBadModel otherwise.
  Token single_token(const std::string& word) const;
  Token eos() const;
  Token bos() const;
  Token sep() const;
  // String metadata value, or "" when absent.
  std::string meta(const std::string& key) const;

 private:
  Model(llama_model* model, const std::string& path);
  void read_info(const std::string& path);

  llama_model* model_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  ModelInfo info_;
};

// Makes llama.cpp quiet (its log goes to stderr otherwise) and keeps its last error lines, so a
// failed load can say why. QRANK_LOG=1 restores llama.cpp's log.
void init_llama_backend();
std::string last_llama_errors();

}  // namespace qrank
