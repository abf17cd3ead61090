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
  std::vector<int64_t> head_rows;  // kHeadRows: its rows, in output order; with two rows the
                                   // relevance logit is row 0 - row 1 (an engine may compute it)
};

struct Prompt {
  Tokens tokens;
  bool truncated = false;
  int32_t shared = 0;  // leading tokens shared by every prompt of the same query (0: none)
};

// The part of a rerank prompt that depends on the query and instruction only, tokenised once per
// request and shared by all its documents.
struct QueryPrompt {
  Tokens head;  // the template's start, the instruction and the query, up to where the document goes
  std::string instruction;
  std::string query;
  int32_t fixed = 0;  // leading tokens of head that depend on neither the query nor the instruction
};

class RerankRecipe {
 public:
  virtual ~RerankRecipe() = default;
  virtual std::string name() const = 0;
  virtual std::string default_instruction() const { return ""; }
  virtual OutputSpec output() const = 0;
  // The prompt text of one pair, as the model card writes it (for display and tests).
  virtual std::string text(const std::string& query, const std::string& document, const std::string& instruction) const = 0;
  // The query's part of every prompt; throws Error(kInvalidInput) when it leaves no room for a
  // document within max_tokens.
  virtual QueryPrompt query(const std::string& query, const std::string& instruction, size_t max_tokens) const = 0;
  // Token ids of one pair, at most max_tokens; documents are cut, the template never is.
  virtual Prompt tokens(const QueryPrompt& query, const std::string& document, size_t max_tokens) const = 0;
  // The engine's raw outputs for one sequence -> the relevance logit; relevance = sigmoid(logit).
  virtual float logit(const float* outputs, size_t n) const = 0;
};

// Relevance in [0, 1] from a relevance logit.
float relevance(float logit);

class EmbedRecipe {
 public:
  virtual ~EmbedRecipe() = default;
  virtual std::string name() const = 0;
  virtual std::string default_instruction() const { return ""; }
  virtual OutputSpec output() const = 0;
  virtual std::string text(const std::string& text, TextKind kind, const std::string& instruction) const = 0;
  virtual Prompt tokens(const std::string& text, TextKind kind, const std::string& instruction, size_t max_tokens) const = 0;
  // Leading tokens that every input of this kind and instruction begins with (0: none known).
  virtual Tokens common_prefix(TextKind, const std::string&) const { return {}; }
};

// Which recipe serves a role for a model, from its metadata alone (no weights, no vocabulary): the
// recipe's name, or "" and why not. make_*_recipe follow it, so `qrank models info` and a load agree.
struct RoleSupport {
  std::string recipe;
  std::string why_not;
};
RoleSupport role_support(const ModelInfo& info, Role role);

// Pick the recipe from the file's metadata; throws Error(kBadModel) when the model cannot serve the role.
std::unique_ptr<RerankRecipe> make_rerank_recipe(const Model& model);
std::unique_ptr<EmbedRecipe> make_embed_recipe(const Model& model);

}  // namespace qrank
