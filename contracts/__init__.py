"""The contracts every layer shares: the OpenAI wire schemas, the error tree, the strict spec base.

The lowest layer: it imports none of ``gateway``, ``routers`` or ``backends``, which all import it.
"""
