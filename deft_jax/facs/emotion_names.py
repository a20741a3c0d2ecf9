"""The spellings of emotions found in annotation sheets and logs, mapped to emotions.py's names.

One table for the builders (sheet cells) and `deft-jax score` (prediction logs), so a log can
name its classes the way the data did: "Happy" is happiness, hence positive in the composite.
"""

from deft_jax.facs import emotions

ALIASES = {"happy": "happiness", "sad": "sadness", "other": "others", "angry": "anger",
           "surprised": "surprise", "disgusted": "disgust", "fearful": "fear"}
EMOTIONS = frozenset(emotions.PROTOTYPES) | {"others", "positive", "negative"}


def emotion_name(text: str) -> str | None:
  """The emotion in the names of emotions.py ("Happy" -> "happiness"), None if unknown."""
  name = text.strip().lower()
  name = ALIASES.get(name, name)
  return name if name in EMOTIONS else None
