#include "qrank/recipe.h"

#include <algorithm>
#include <cmath>

#include "qrank/error.h"
#include "qrank/gguf_meta.h"

namespace qrank {
namespace {

const char kWebSearchInstruction[] = "Given a web search query, retrieve relevant passages that answer the query";

// Qwen3-Reranker's official prompt: system prompt, <Instruct>/<Query>/<Document> body and an
// assistant turn with an empty think block; the three parts are tokenised separately, as the
// reference code does, and only the body is ever truncated (from the end, i.e. the document).
const char kQwen3RerankPrefix[] =
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const char kQwen3RerankSuffix[] = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

std::string too_long_message(size_t needed, size_t max_tokens) {
  return "the query and template take " + std::to_string(needed) + " tokens, more than maxLength " +
         std::to_string(max_tokens) + " allows; shorten the query or instruction, or raise maxLength";
}

// The yes/no rows of a Qwen3 reranker: the 2-row classifier head of a rank-converted GGUF, else
// the "yes" and "no" rows of the language-model head of a plain causal GGUF.
OutputSpec qwen3_yes_no_head(const Model& model) {
  const std::string& path = model.info().path;
  OutputSpec spec;
  spec.kind = OutputSpec::Kind::kHeadRows;
  const auto& labels = model.info().class_labels;
  if (gguf_has_tensor(path, "cls.output.weight")) {
    spec.head_tensor = "cls.output.weight";
    if (labels.size() == 2 && labels[0] == "no" && labels[1] == "yes") {
      spec.head_rows = {1, 0};
    } else {
      spec.head_rows = {0, 1};  // convert_hf_to_gguf writes [yes, no]
    }
    return spec;
  }
  spec.head_tensor = gguf_has_tensor(path, "output.weight") ? "output.weight" : "token_embd.weight";
  spec.head_rows = {model.single_token("yes"), model.single_token("no")};
  return spec;
}

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
    return kQwen3RerankPrefix + body(query, document, instruction) + kQwen3RerankSuffix;
  }

  Prompt tokens(const std::string& query, const std::string& document, const std::string& instruction,
                size_t max_tokens) const override {
    const size_t frame = prefix_.size() + suffix_.size();
    // Everything but the document must fit, with room for at least one document token.
    const size_t head = model_.tokenize(body(query, "", instruction), true).size();
    if (frame + head + 1 > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(frame + head, max_tokens));
    Tokens b = model_.tokenize(body(query, document, instruction), true);
    Prompt p;
    if (b.size() + frame > max_tokens) {
      b.resize(max_tokens - frame);
      p.truncated = true;
    }
    p.tokens.reserve(frame + b.size());
    p.tokens.insert(p.tokens.end(), prefix_.begin(), prefix_.end());
    p.tokens.insert(p.tokens.end(), b.begin(), b.end());
    p.tokens.insert(p.tokens.end(), suffix_.begin(), suffix_.end());
    return p;
  }

  // P(yes) = softmax over the (yes, no) logits of the last token.
  float score(const float* outputs, size_t) const override { return sigmoid(outputs[0] - outputs[1]); }

 private:
  static std::string body(const std::string& query, const std::string& document, const std::string& instruction) {
    return "<Instruct>: " + instruction + "\n<Query>: " + query + "\n<Document>: " + document;
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

  Prompt tokens(const std::string& query, const std::string& document, const std::string&, size_t max_tokens) const override {
    Prompt p;
    if (!template_.empty()) {
      p.tokens = model_.tokenize(fill(query, document), true);
      if (p.tokens.size() > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(p.tokens.size(), max_tokens));
      return p;
    }
    const Tokens q = model_.tokenize(query, false);
    Tokens d = model_.tokenize(document, false);
    const size_t frame = q.size() + 4;
    if (frame + 1 > max_tokens) throw Error(ErrorCode::kInvalidInput, too_long_message(frame, max_tokens));
    if (frame + d.size() > max_tokens) {
      d.resize(max_tokens - frame);
      p.truncated = true;
    }
    p.tokens.push_back(model_.bos());
    p.tokens.insert(p.tokens.end(), q.begin(), q.end());
    p.tokens.push_back(model_.eos());
    p.tokens.push_back(model_.sep());
    p.tokens.insert(p.tokens.end(), d.begin(), d.end());
    p.tokens.push_back(model_.eos());
    return p;
  }

  // One logit: the model cards apply a sigmoid; two labeled yes/no: softmax, as for Qwen3.
  float score(const float* outputs, size_t n) const override {
    const auto& labels = model_.info().class_labels;
    if (n >= 2 && labels.size() >= 2 && labels[0] == "yes") return sigmoid(outputs[0] - outputs[1]);
    return sigmoid(outputs[0]);
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
// plain; EOS is appended and the last token's hidden state is the embedding.
class Qwen3Embedder final : public EmbedRecipe {
 public:
  explicit Qwen3Embedder(const Model& model) : model_(model) {}
  std::string name() const override { return "qwen3-embedding"; }
  std::string default_instruction() const override { return kWebSearchInstruction; }
  OutputSpec output() const override { return OutputSpec{OutputSpec::Kind::kLastHidden, "", {}}; }

  std::string text(const std::string& text, TextKind kind, const std::string& instruction) const override {
    return kind == TextKind::kQuery ? "Instruct: " + instruction + "\nQuery:" + text : text;
  }

  Prompt tokens(const std::string& input, TextKind kind, const std::string& instruction, size_t max_tokens) const override {
    Prompt p;
    p.tokens = model_.tokenize(text(input, kind, instruction), true);
    if (p.tokens.size() + 1 > max_tokens) {
      if (max_tokens < 2) throw Error(ErrorCode::kInvalidInput, "maxLength must leave room for text and EOS");
      p.tokens.resize(max_tokens - 1);
      p.truncated = true;
    }
    p.tokens.push_back(model_.eos());
    return p;
  }

 private:
  const Model& model_;
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

std::unique_ptr<RerankRecipe> make_rerank_recipe(const Model& model) {
  const ModelInfo& info = model.info();
  if (is_qwen3(info)) {
    if (info.pooling != "rank" && info.pooling != "none") {
      throw Error(ErrorCode::kBadModel, info.path + " is a Qwen3 embedding model (pooling " + info.pooling +
                                            "); load it with Embedder, or use a Qwen3-Reranker GGUF");
    }
    return std::make_unique<Qwen3Reranker>(model);
  }
  if (info.pooling != "rank") {
    throw Error(ErrorCode::kBadModel, info.path + " (" + info.architecture + ", pooling " + info.pooling +
                                          ") is not a reranker: a cross-encoder GGUF declares rank pooling");
  }
  return std::make_unique<CrossEncoder>(model);
}

std::unique_ptr<EmbedRecipe> make_embed_recipe(const Model& model) {
  const ModelInfo& info = model.info();
  if (info.pooling == "rank") {
    throw Error(ErrorCode::kBadModel, info.path + " is a reranker (rank pooling); load it with Reranker");
  }
  if (is_qwen3(info)) return std::make_unique<Qwen3Embedder>(model);
  if (info.pooling == "none") {
    throw Error(ErrorCode::kBadModel, info.path + " declares no pooling: it is not an embedding model");
  }
  return std::make_unique<PooledEmbedder>(model);
}

}  // namespace qrank
