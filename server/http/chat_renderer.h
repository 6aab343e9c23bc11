// The seam between the HTTP front end and chat templates: /v1/chat/completions
// turns its messages into prompt text through a ChatRenderer, so server/http
// knows nothing of Jinja. The model's template engine (model/chat) implements
// it; tests use a tiny fixed format.
#ifndef KESTREL_SERVER_HTTP_CHAT_RENDERER_H_
#define KESTREL_SERVER_HTTP_CHAT_RENDERER_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kestrel::server::http {

// Thread-safe: Render is called concurrently from the HTTP event loop (and
// must not block for long: it runs on that loop).
class ChatRenderer {
 public:
  virtual ~ChatRenderer() = default;

  // The prompt text for `messages` (the request's array, as sent: objects
  // with "role" and "content", which may be a string, null or an array of
  // parts). `tools` is the request's "tools" array, or null when absent.
  // `add_generation_prompt` appends the assistant turn's header.
  // `chat_template_kwargs` (an object, {} when absent) are extra template
  // variables. The text is tokenized with add_special_tokens=false and
  // parse_special_tokens=true: the template writes BOS and control tokens.
  // INVALID_ARGUMENT (a message the template rejects) becomes HTTP 400.
  virtual absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                             const nlohmann::ordered_json& tools,
                                             bool add_generation_prompt,
                                             const nlohmann::ordered_json& chat_template_kwargs)
      const = 0;
};

}  // namespace kestrel::server::http

#endif  // KESTREL_SERVER_HTTP_CHAT_RENDERER_H_
