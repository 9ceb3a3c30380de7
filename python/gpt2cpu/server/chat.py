"""Turning chat messages into a prompt.

In order of preference:
- the Jinja `chat_template` of the model's tokenizer_config.json (rendered in a sandbox,
  with `messages`, `add_generation_prompt=True`, `bos_token` and `eos_token`, as
  transformers' `apply_chat_template` does; needs jinja2, in the server extra);
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
from dataclasses import dataclass
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
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        tokenizer = model.tokenizer
        assert tokenizer is not None
        names = {v: k for k, v in tokenizer.special_tokens.items()}
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise ValueError(f"the chat template refused the messages: {message}")

        env.globals["raise_exception"] = raise_exception
        try:
            template = env.from_string(self.source)
            rendered: str = template.render(
                messages=[{"role": m.role, "content": m.text()} for m in messages],
                add_generation_prompt=True,
                bos_token=_name(names, tokenizer.bos_token_id),
                eos_token=_name(names, tokenizer.eos_token_id),
            )
        except TemplateError as exc:
            raise ValueError(f"the chat template failed: {exc}") from None
        return rendered


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
