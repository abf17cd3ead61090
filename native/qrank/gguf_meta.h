// Direct reads of a GGUF file, for what llama.cpp's API does not expose: single rows of a weight
// matrix (the yes/no rows of a reranker's output head), dequantised to float.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qrank {

// True when the file holds a tensor of that name.
bool gguf_has_tensor(const std::string& path, const std::string& tensor);

// Rows `rows` of a 2-D tensor, dequantised to float, concatenated; `row_len` receives ne[0].
// Throws Error(kBadModel) when the tensor is missing, not 2-D, of a type ggml cannot dequantise,
// or a row is out of range.
std::vector<float> gguf_read_rows(const std::string& path, const std::string& tensor,
                                  const std::vector<int64_t>& rows, int64_t* row_len);

}  // namespace qrank
