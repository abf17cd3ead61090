#include "qrank/recipe.h"

#include <algorithm>
#include <cmath>

#include "qrank/error.h"

namespace qrank {
namespace {

const char kWebSearchInstruction[] = "Given a web search query, retrieve relevant passages that answer the query";

// The fixed parts of Qwen3-Reranker's official prompt (see Qwen3Reranker).
const char kQwen3RerankPrefix[] =
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const char kQwen3RerankSuffix[] = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

std::string too_long_message(size_t needed, size_t max_tokens) {
  return "the query and template take " + std::to_string(needed) + " tokens, more than maxLength " +
         std::to_string(max_tokens) + " allows; shorten the query or instruction, or raise maxLength";
}

// The yes/no rows of a Qwen3 reranker: the 2-row classifier head of a rank-converted GGUF, else
// the "yes" and "no" rows of the language-model head of a plain causal GGUF.
OutputSpec qwen3_yes_no_head(const Model& model) {
  const GgufFile& file = model.file();
  OutputSpec spec;
  spec.kind = OutputSpec::Kind::kHeadRows;
  const auto& labels = model.info().class_labels;
  if (file.find("cls.output.weight")) {
    spec.head_tensor = "cls.output.weight";
    if (labels.size() == 2 && labels[0] == "no" && labels[1] == "yes") {
      spec.head_rows = {1, 0};
    } else {
      spec.head_rows = {0, 1};  // convert_hf_to_gguf writes [yes, no]
    }
    return spec;
  }
  spec.head_tensor = file.find("output.weight") ? "output.weight" : "token_embd.weight";
  spec.head_rows = {model.single_token("yes"), model.single_token("no")};
  return spec;
}

// Qwen3-Reranker's official prompt: system prompt, <Instruct>/<Query>/<Document> body and an
// assistant turn with an empty think block; the three parts are tokenised separately, as the
// reference code does, and only the body is ever truncated (from the end, i.e. the document).
//
// The body is tokenised in two pieces, the query's head up to "<Document>:" once per request and
// " " + document once per document. That gives the ids of the whole body: the tokenizer's
// pre-tokenisation (Qwen2's regex, applied left to right with no look-behind) always ends a piece at
// the ':' before that space, so no merge crosses the cut. test/reranker.test.ts checks it against
// the body tokenised whole, on hostile documents too.
class Qwen3Reranker final : public RerankRecipe {
 public:
  explicit Qwen3Reranker(const Model& model)
      : model_(model),
        prefix_(model.tokenize(kQwen3RerankPrefix, true)),
        suffix_(model.tokenize(kQwen3RerankSuffix, true)),
        output_(qwen3_yes_no_head(model)) {}

  std::string name() const override { return "qwen3-reranker"; }
  std::string default_instruction() const override { return kWebSearchInstruction; }
  OutputSpec output() const override { return output_; }

  std::string text(const std::string& query, const std::string& document, const std::string& instruction) const override {
    return kQwen3RerankPrefix + head(query, instruction) + " " + document + kQwen3RerankSuffix;
  }

  QueryPrompt query(const std::string& query, const std::string& instruction, size_t max_tokens) const override {
    QueryPrompt q{prefix_, instruction, query, static_cast<int32_t>(prefix_.size())};
    const Tokens h = model_.tokenize(head(query, instruction), true);
    q.head.insert(q.head.end(), h.begin(), h.end());
    // Everything but the document must fit, with room for its first token (or the lone space).
    const size_t needed = q.head.size() + 1 + suffix_.size();
    if (needed + 1 > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(needed, max_tokens));
    return q;
  }

  Prompt tokens(const QueryPrompt& q, const std::string& document, size_t max_tokens) const override {
    Tokens d = model_.tokenize(" " + document, true);
    Prompt p;
    const size_t room = max_tokens - q.head.size() - suffix_.size();  // query() left room for >= 2
    if (d.size() > room) {
      d.resize(room);
      p.truncated = true;
    }
    p.tokens.reserve(q.head.size() + d.size() + suffix_.size());
    p.tokens = q.head;
    p.tokens.insert(p.tokens.end(), d.begin(), d.end());
    p.tokens.insert(p.tokens.end(), suffix_.begin(), suffix_.end());
    p.shared = static_cast<int32_t>(q.head.size());
    return p;
  }

  // P(yes) = softmax over the (yes, no) logits of the last token = sigmoid(yes - no).
  float logit(const float* outputs, size_t) const override { return outputs[0] - outputs[1]; }

 private:
  static std::string head(const std::string& query, const std::string& instruction) {
    return "<Instruct>: " + instruction + "\n<Query>: " + query + "\n<Document>:";
  }

  const Model& model_;
  Tokens prefix_;
  Tokens suffix_;
  OutputSpec output_;
};

// BERT-style cross-encoders (bge-reranker-v2-m3, jina rerankers) converted with rank pooling:
// the pair is encoded as llama.cpp's server does (the file's "rerank" template when it has one,
// else BOS query EOS SEP document EOS), and the classifier output becomes a probability.
class CrossEncoder final : public RerankRecipe {
 public:
  explicit CrossEncoder(const Model& model) : model_(model), template_(model.meta("tokenizer.chat_template.rerank")) {}

  std::string name() const override { return "cross-encoder"; }
  OutputSpec output() const override { return OutputSpec{}; }

  std::string text(const std::string& query, const std::string& document, const std::string&) const override {
    if (!template_.empty()) return fill(query, document);
    return "[BOS]" + query + "[EOS][SEP]" + document + "[EOS]";
  }

  QueryPrompt query(const std::string& query, const std::string& instruction, size_t max_tokens) const override {
    QueryPrompt q{{}, instruction, query, 0};
    if (!template_.empty()) return q;  // the template is filled per pair
    q.head.push_back(model_.bos());
    const Tokens t = model_.tokenize(query, false);
    q.head.insert(q.head.end(), t.begin(), t.end());
    q.head.push_back(model_.eos());
    q.head.push_back(model_.sep());
    if (q.head.size() + 2 > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(q.head.size() + 1, max_tokens));
    return q;
  }

  Prompt tokens(const QueryPrompt& q, const std::string& document, size_t max_tokens) const override {
    Prompt p;
    if (!template_.empty()) {
      p.tokens = model_.tokenize(fill(q.query, document), true);
      if (p.tokens.size() > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(p.tokens.size(), max_tokens));
      return p;
    }
    Tokens d = model_.tokenize(document, false);
    const size_t room = max_tokens - q.head.size() - 1;
    if (d.size() > room) {
      d.resize(room);
      p.truncated = true;
    }
    p.tokens = q.head;
    p.tokens.insert(p.tokens.end(), d.begin(), d.end());
    p.tokens.push_back(model_.eos());
    return p;  // bidirectional attention: no prefix can be shared
  }

  // One logit: the model cards apply a sigmoid; two labeled yes/no: softmax, as for Qwen3.
  float logit(const float* outputs, size_t n) const override {
    const auto& labels = model_.info().class_labels;
    if (n >= 2 && labels.size() >= 2 && labels[0] == "yes") return outputs[0] - outputs[1];
    return outputs[0];
  }

 private:
  std::string fill(const std::string& query, const std::string& document) const {
    std::string out = template_;
    replace(out, "{query}", query);
    replace(out, "{document}", document);
    return out;
  }
  static void replace(std::string& s, const std::string& key, const std::string& value) {
    const size_t at = s.find(key);
    if (at != std::string::npos) s.replace(at, key.size(), value);
  }

  const Model& model_;
  std::string template_;
};

// Qwen3-Embedding: queries carry the task ("Instruct: {task}\nQuery:{query}"), documents are
// plain; the last token's hidden state is the embedding. Every input ends with <|endoftext|>, the
// token Qwen3-Embedding's tokenizer appends (its post-processor), whatever EOS the GGUF declares:
// many conversions declare <|im_end|>, Qwen3's chat end, which would change every embedding. EOS
// is the fallback only for a vocabulary without <|endoftext|>. The vocabulary's own add-EOS rule is
// never applied on top (tokenize without add_special), so no input gets two.
class Qwen3Embedder final : public EmbedRecipe {
 public:
  explicit Qwen3Embedder(const Model& model) : model_(model), end_(end_token(model)) {}
  std::string name() const override { return "qwen3-embedding"; }
  std::string default_instruction() const override { return kWebSearchInstruction; }
  OutputSpec output() const override { return OutputSpec{OutputSpec::Kind::kLastHidden, "", {}}; }

  std::string text(const std::string& text, TextKind kind, const std::string& instruction) const override {
    return kind == TextKind::kQuery ? "Instruct: " + instruction + "\nQuery:" + text : text;
  }

  Prompt tokens(const std::string& input, TextKind kind, const std::string& instruction, size_t max_tokens) const override {
    Prompt p;
    p.tokens = model_.tokenize(text(input, kind, instruction), true, false);
    if (p.tokens.size() + 1 > max_tokens) {
      if (max_tokens < 2) throw Error(ErrorCode::kInvalidInput, "maxLength must leave room for text and <|endoftext|>");
      p.tokens.resize(max_tokens - 1);
      p.truncated = true;
    }
    p.tokens.push_back(end_);
    return p;
  }

  // Queries begin with "Instruct: {task}\n": the pre-tokeniser ends a piece at that newline
  // (the next character is a letter), so these tokens begin every query of the task.
  Tokens common_prefix(TextKind kind, const std::string& instruction) const override {
    if (kind != TextKind::kQuery) return {};
    return model_.tokenize("Instruct: " + instruction + "\n", true, false);
  }

 private:
  static Token end_token(const Model& model) {
    const Token t = model.special_token("<|endoftext|>");
    return t >= 0 ? t : model.eos();
  }

  const Model& model_;
  Token end_;
};

// Other embedding GGUFs: the vocabulary's own BOS/EOS rules and the pooling the file declares.
class PooledEmbedder final : public EmbedRecipe {
 public:
  explicit PooledEmbedder(const Model& model) : model_(model) {}
  std::string name() const override { return "pooled-embedding"; }
  OutputSpec output() const override { return OutputSpec{}; }
  std::string text(const std::string& text, TextKind kind, const std::string& instruction) const override {
    return kind == TextKind::kQuery && !instruction.empty() ? instruction + text : text;
  }
  Prompt tokens(const std::string& input, TextKind kind, const std::string& instruction, size_t max_tokens) const override {
    Prompt p;
    p.tokens = model_.tokenize(text(input, kind, instruction), true, true);
    if (p.tokens.size() > max_tokens) {
      p.tokens.resize(max_tokens);
      p.truncated = true;
    }
    return p;
  }

 private:
  const Model& model_;
};

bool is_qwen3(const ModelInfo& info) { return info.architecture == "qwen3"; }

}  // namespace

float relevance(float logit) { return 1.0f / (1.0f + std::exp(-logit)); }

RoleSupport role_support(const ModelInfo& info, Role role) {
  if (role == Role::kReranker) {
    if (is_qwen3(info)) {
      if (info.pooling != "rank" && info.pooling != "none") {
        return {"", info.path + " is a Qwen3 embedding model (pooling " + info.pooling +
                        "); load it with Embedder, or use a Qwen3-Reranker GGUF"};
      }
      return {"qwen3-reranker", ""};
    }
    if (info.pooling != "rank") {
      return {"", info.path + " (" + info.architecture + ", pooling " + info.pooling +
                      ") is not a reranker: a cross-encoder GGUF declares rank pooling"};
    }
    return {"cross-encoder", ""};
  }
  if (info.pooling == "rank") return {"", info.path + " is a reranker (rank pooling); load it with Reranker"};
  if (is_qwen3(info)) return {"qwen3-embedding", ""};
  if (info.pooling == "none") return {"", info.path + " declares no pooling: it is not an embedding model"};
  return {"pooled-embedding", ""};
}

std::unique_ptr<RerankRecipe> make_rerank_recipe(const Model& model) {
  const RoleSupport r = role_support(model.info(), Role::kReranker);
  if (r.recipe.empty()) throw Error(ErrorCode::kBadModel, r.why_not);
  if (r.recipe == "qwen3-reranker") return std::make_unique<Qwen3Reranker>(model);
  return std::make_unique<CrossEncoder>(model);
}

std::unique_ptr<EmbedRecipe> make_embed_recipe(const Model& model) {
  const RoleSupport r = role_support(model.info(), Role::kEmbedder);
  if (r.recipe.empty()) throw Error(ErrorCode::kBadModel, r.why_not);
  if (r.recipe == "qwen3-embedding") return std::make_unique<Qwen3Embedder>(model);
  return std::make_unique<PooledEmbedder>(model);
}

}  // namespace qrank
