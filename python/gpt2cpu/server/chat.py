"""Turning chat messages into a prompt.

In order of preference:
- the Jinja `chat_template` of the model's tokenizer_config.json (rendered in a sandbox,
  with `messages`, `add_generation_prompt=True`, `bos_token` and `eos_token`, in the
  environment transformers' `apply_chat_template` gives it: loop controls, its `tojson`,
  `raise_exception`, `strftime_now` and the `{% generation %}` block; compiled when the
  server starts; needs jinja2, in the server extra);
- "eos": each message's content followed by the end-of-text token, the way DialoGPT was
  trained (transformers' old default template for GPT-2 tokenizers); the reply follows;
- "plain": one line per message, "System: ...", "User: ...", "Assistant: ...", and an
  open "Assistant:" line for the reply, for plain language models. Generation stops at
  the next "\nUser:" line (added to the request's stop strings).

`--chat-template` picks one: auto (the file's template, else "eos" for a model whose path
names DialoGPT, else "plain"), plain, eos, or a file holding a Jinja template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import Model
    from .schemas import ChatMessage

_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant",
          "tool": "Tool"}


@dataclass(frozen=True)
class ChatTemplate:
    kind: str  # "jinja", "eos" or "plain"
    source: str = ""
    # The compiled Jinja template: a syntax error is found when the server starts.
    compiled: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "jinja" and self.compiled is None:
            from jinja2.exceptions import TemplateError

            try:
                compiled = _environment().from_string(self.source)
            except TemplateError as exc:
                raise ValueError(f"the chat template does not compile: {exc} (--chat-template "
                                 "plain, eos or a file serves without it)") from None
            object.__setattr__(self, "compiled", compiled)

    @property
    def stop(self) -> tuple[str, ...]:
        return ("\nUser:",) if self.kind == "plain" else ()

    def prompt_ids(self, model: Model, messages: list[ChatMessage]) -> list[int]:
        tokenizer = model.require_tokenizer("chat needs one to encode the messages")
        if self.kind == "eos":
            eos = tokenizer.eos_token_id
            if eos is None:
                raise ValueError("the eos chat template needs the model's end-of-text token")
            ids: list[int] = []
            for message in messages:
                ids += tokenizer.encode(message.text()) + [eos]
            return ids
        if self.kind == "plain":
            lines = [f"{_ROLES[m.role]}: {m.text()}" for m in messages]
            return tokenizer.encode("\n".join([*lines, "Assistant:"]))
        return tokenizer.encode(self._render(model, messages), allowed_special="all")

    def _render(self, model: Model, messages: list[ChatMessage]) -> str:
        tokenizer = model.tokenizer
        assert tokenizer is not None
        names = {v: k for k, v in tokenizer.special_tokens.items()}
        try:
            rendered: str = self.compiled.render(
                messages=[{"role": m.role, "content": m.text()} for m in messages],
                add_generation_prompt=True,
                bos_token=_name(names, tokenizer.bos_token_id),
                eos_token=_name(names, tokenizer.eos_token_id),
            )
        except _Refused as exc:
            raise ValueError(f"the chat template refused the messages: {exc}") from None
        # Any failure of the template's own code (a TemplateError, or a TypeError from
        # `content + 1`) is the template meeting these messages: a 400, not a 500.
        except Exception as exc:
            raise ValueError(f"the chat template failed: {type(exc).__name__}: {exc}") from None
        return rendered


class _Refused(Exception):
    """raise_exception() called by a template."""


def _environment() -> Any:
    """The sandboxed environment transformers renders chat templates in."""
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        # transformers' {% generation %}...{% endgeneration %} marks the assistant's text
        # for training masks; rendered, it is its body.
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body).set_lineno(lineno)

    def raise_exception(message: str) -> None:
        raise _Refused(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
        # transformers' own, in place of Jinja's HTML-safe one: "<" stays "<", keys keep
        # their order, non-ASCII stays as it is.
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols, GenerationBlock])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def _name(names: dict[int, str], token: int | None) -> str:
    return "" if token is None else names.get(token, "")


def load_template(model: Model, choice: str = "auto") -> ChatTemplate:
    """The template `--chat-template` names (see the module's help)."""
    if choice in ("plain", "eos"):
        return ChatTemplate(choice)
    if choice != "auto":
        return ChatTemplate("jinja", Path(choice).read_text(encoding="utf-8"))
    source = _config_template(model.path)
    if source is not None:
        return ChatTemplate("jinja", source)
    if model.path is not None and "dialogpt" in str(model.path).lower():
        return ChatTemplate("eos")
    return ChatTemplate("plain")


def _config_template(directory: Path | None) -> str | None:
    if directory is None:
        return None
    path = directory / "tokenizer_config.json"
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(template, list):  # several named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None
