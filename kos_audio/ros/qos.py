"""The QoS profiles of every kos_audio topic, in one place.

Defaults are chosen to be compatible with the widest set of peers: audio publishers are
RELIABLE/VOLATILE (any subscriber matches; ``ros2 bag record`` matches), format and state
topics are latched (TRANSIENT_LOCAL, depth 1) so a late subscriber gets the current value.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

#: ``qos.reliability`` parameter values.
RELIABILITY = {
    "reliable": ReliabilityPolicy.RELIABLE,
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
}


def audio_qos(reliability: str, depth: int) -> QoSProfile:
    """Profile of audio chunk topics: KEEP_LAST(``depth``), VOLATILE, given reliability.

    Raises:
        ValueError: unknown ``reliability``.

    """
    try:
        policy = RELIABILITY[reliability]
    except KeyError:
        raise ValueError(
            f"qos.reliability must be one of {', '.join(RELIABILITY)}, not {reliability!r}"
        ) from None
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
        durability=DurabilityPolicy.VOLATILE,
    )


#: ``audio_info`` and state topics (``is_speaking``): the last value, kept for late joiners.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
