"""Provider adapters: each turns Messages into SendResults through one provider."""

from senders.base import (
    BatchForm,
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SenderError,
    SendResult,
    TaggedContent,
)

__all__ = [
    "BatchForm",
    "Message",
    "Outcome",
    "SendResult",
    "Sender",
    "SenderConfigurationError",
    "SenderError",
    "TaggedContent",
]
