"""Provider adapters: each turns Messages into SendResults through one provider."""

from .base import (
    Message,
    Outcome,
    Sender,
    SenderConfigurationError,
    SenderError,
    SendResult,
)

__all__ = [
    "Message",
    "Outcome",
    "SendResult",
    "Sender",
    "SenderConfigurationError",
    "SenderError",
]
