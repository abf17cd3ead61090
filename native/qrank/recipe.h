// Prompt recipes: how a model family turns (query, document) pairs and texts into token ids, which
// output of the network it reads, and how that output becomes a score. One place, shared by every
// backend: the engines only ever see token ids.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "qrank/model.h"

namespace qrank {

enum class Role { kReranker, kEmbedder };
enum class TextKind { kQuery, kDocument };

// What the engine must produce for each sequence.
struct OutputSpec {
  enum class Kind {
    kHeadRows,    // last token's final hidden state times a few rows of a weight matrix (Qwen3 yes/no)
    kLastHidden,  // last token's final hidden state (Qwen3-Embedding)
    kPooled,      // llama.cpp's own pooling as the file declares it (BERT-style models)
  };
  Kind kind = Kind::kPooled;
  std::string head_tensor;        // kHeadRows: the matrix
  std::vector<int64_t> head_rows;  // kHeadRows: its rows, in output order
};

struct Prompt {
  Tokens tokens;
  bool truncated = false;
};

class RerankRecipe {
 public:
  virtual ~RerankRecipe() = default;
  virtual std::string name() const = 0;
  virtual std::string default_instruction() const { return ""; }
  virtual OutputSpec output() const = 0;
  // The prompt text of one pair, as the model card writes it (for display and tests).
  virtual std::string text(const std::string& query, const std::string& document, const std::string& instruction) const = 0;
  // Token ids of one pair, at most max_tokens; documents are cut, the template never is.
  virtual Prompt tokens(const std::string& query, const std::string& document, const std::string& instruction,
                        size_t max_tokens) const = 0;
  // The engine's outputs for one sequence -> relevance in [0, 1].
  virtual float score(const float* outputs, size_t n) const = 0;
};

class EmbedRecipe {
 public:
  virtual ~EmbedRecipe() = default;
  virtual std::string name() const = 0;
  virtual std::string default_instruction() const { return ""; }
  virtual OutputSpec output() const = 0;
  virtual std::string text(const std::string& text, TextKind kind, const std::string& instruction) const = 0;
  virtual Prompt tokens(const std::string& text, TextKind kind, const std::string& instruction, size_t max_tokens) const = 0;
};

// Pick the recipe from the file's metadata; throws Error(kBadModel) when the model cannot serve the role.
std::unique_ptr<RerankRecipe> make_rerank_recipe(const Model& model);
std::unique_ptr<EmbedRecipe> make_embed_recipe(const Model& model);

}  // namespace qrank
