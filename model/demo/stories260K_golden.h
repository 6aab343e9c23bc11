// The reference greedy continuation of the demo model, for tests: llama2.c's
// run.c (fp32) on the original stories260K checkpoint, prompt "Once upon a
// time", 60 tokens. Copied from the shared test data
// (../shared/models/stories260K/golden/greedy.json, which
// model:builtin_models_test checks this copy against when present) so that
// tests of the built-in demo model need nothing outside the checkout.
#ifndef KESTREL_MODEL_DEMO_STORIES260K_GOLDEN_H_
#define KESTREL_MODEL_DEMO_STORIES260K_GOLDEN_H_

#include <cstdint>
#include <vector>

namespace kestrel::model::demo {

inline constexpr char kGoldenPrompt[] = "Once upon a time";
// BOS, then the prompt's tokens.
inline const std::vector<int32_t> kGoldenPromptIds = {1, 403, 407, 261, 378};
inline const std::vector<int32_t> kGoldenOutputIds = {
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
    401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
    295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432,
    398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310};
// The text of kGoldenOutputIds alone.
inline constexpr char kGoldenOutputText[] =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, "
    "she saw a big, red ball. She wanted to play with it, but it was too high.\nLily";

}  // namespace kestrel::model::demo

#endif  // KESTREL_MODEL_DEMO_STORIES260K_GOLDEN_H_
