// Per-environment state of the addon (the main thread and each worker thread have their own):
// the constructors used to create wrapped objects from C++.
#pragma once

#include <napi.h>

namespace qrank_node {

struct AddonData {
  Napi::FunctionReference model_constructor;
  Napi::FunctionReference index_constructor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace qrank_node
