#!/usr/bin/env python3
"""Renders chat templates with python3-jinja2, set up exactly as Hugging Face
transformers sets it up for apply_chat_template (its _compile_jinja_template
and render_jinja_template): an ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks, the loopcontrols extension and a {% generation %} tag, its own
tojson (json.dumps with ensure_ascii=False), raise_exception and strftime_now.

Reads JSON lines on stdin:
  {"template": ..., "special_tokens": {"bos_token": ...}, "messages": [...],
   "tools": ..., "documents": ..., "add_generation_prompt": bool,
   "extra": {...}, "now": "2026-07-26T14:30:00"}
and writes one line per input: {"rendered": TEXT} or {"error": MESSAGE}.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(Extension):
    """transformers' AssistantTracker without the mask bookkeeping: the body
    of {% generation %} renders as is."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_render_body")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


def make_environment(now):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(case):
    now = datetime.fromisoformat(case.get("now", "2026-07-26T14:30:00"))
    template = make_environment(now).from_string(case["template"])
    kwargs = dict(case.get("special_tokens") or {})
    kwargs.update(case.get("extra") or {})
    return template.render(messages=case.get("messages", []), tools=case.get("tools"),
                           documents=case.get("documents"),
                           add_generation_prompt=case.get("add_generation_prompt", False), **kwargs)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = {"rendered": render(json.loads(line))}
        except Exception as error:  # every template failure is an expected outcome
            result = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
