"""Instruction data for causal LMs: every example becomes (prompt messages, response[, choices]).

Stored in the Parquet splits as columns `prompt` (a JSON list of chat messages, the conversation up to
the answer), `response` (the answer text the loss is on), `choices` (a JSON list for multiple-choice
targets, else "") and `label` (the index of the right choice, else ""), so splitting and hashing work
as for every other dataset. Sources map their columns with `columns:`:
- `prompt` + `response`: one user turn and its answer (`prompt` may list several columns, joined by a
  blank line: alpaca's instruction + input);
- `messages`: a chat (list of {role, content}); the last message must be the assistant's answer;
- `choices` + `answer` (index, letter, or the choice's text): multiple choice; the response is the
  right choice.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..errors import DataError

DEFAULTS = {"prompt": "prompt", "response": "response", "messages": "messages", "choices": "choices", "answer": "answer"}


def _list(v) -> list:
    if isinstance(v, str):
        v = json.loads(v)
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, dict) and "text" in v:  # HF's {"text": [...], "label": [...]} choice structs
        v = v["text"]
    return [x if isinstance(x, dict) else str(x) for x in v]


def _answer_index(name, answer, choices: list[str]) -> int:
    if isinstance(answer, (int, np.integer)) or (isinstance(answer, str) and answer.strip().isdigit()):
        i = int(answer)
    elif isinstance(answer, str) and answer in choices:
        i = choices.index(answer)
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().isalpha():
        i = ord(answer.strip().upper()) - ord("A")
    else:
        raise DataError(f"dataset {name}: answer {answer!r} is neither an index, a letter nor one of the choices")
    if not 0 <= i < len(choices):
        raise DataError(f"dataset {name}: answer {answer!r} is out of range for {len(choices)} choices")
    return i


def to_examples(name: str, df: pd.DataFrame, columns: dict) -> pd.DataFrame:
    cols = {**DEFAULTS, **columns}
    have = set(map(str, df.columns))
    prompt_cols = cols["prompt"] if isinstance(cols["prompt"], list) else [cols["prompt"]]
    rows = []
    if cols["messages"] in have:
        for chat in df[cols["messages"]]:
            msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in _list(chat)]
            if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
                raise DataError(f"dataset {name}: a '{cols['messages']}' chat must end with an assistant message")
            rows.append((msgs[:-1], msgs[-1]["content"], "", ""))
    elif all(c in have for c in prompt_cols):
        mc = cols["choices"] in have
        need = [cols["answer"]] if mc else [cols["response"]]
        missing = [c for c in need if c not in have]
        if missing:
            raise DataError(f"dataset {name}: no column '{missing[0]}' for {'answer' if mc else 'response'} "
                            f"(columns: {', '.join(sorted(have))})")
        for _, r in df.iterrows():
            text = "\n\n".join(str(r[c]) for c in prompt_cols if pd.notna(r[c]) and str(r[c]).strip())
            if mc:
                choices = _list(r[cols["choices"]])
                i = _answer_index(name, r[cols["answer"]], choices)
                rows.append(([{"role": "user", "content": text}], choices[i], json.dumps(choices), str(i)))
            else:
                rows.append(([{"role": "user", "content": text}], str(r[cols["response"]]), "", ""))
    else:
        raise DataError(f"dataset {name}: no '{cols['messages']}' column and no prompt column(s) {prompt_cols} "
                        f"(columns: {', '.join(sorted(have))}; map them with columns:)")
    out = pd.DataFrame(rows, columns=["prompt", "response", "choices", "label"])
    out["prompt"] = [json.dumps(p, ensure_ascii=False) for p in out["prompt"]]
    return out
