"""What :func:`~.compiler.compile` says when it cannot compile a call: the error that names the
module, function or method, where the model calls it, and what is supported instead.

:data:`WHY_NOT` holds the reasons for the calls that are refused on purpose, not just missing
from the registries (an embedding's integer lookup, a mask computed from the input, attention
with dropout): each says why, and what to write instead that compiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .call import Call, UnsupportedModuleError
from .modules import supported_modules
from .ops import supported_ops

if TYPE_CHECKING:
    import torch.fx

#: ``{module class name, or function / method name: the reason}``, appended to the refusal.
WHY_NOT = {
    **{kind: " (it looks up rows by integer index: not a function of a float input; compile the part of "
             "the model after it, on its output)" for kind in ("Embedding", "EmbeddingBag")},
    "scaled_dot_product_attention": " (compile writes it out unless dropout_p > 0 or enable_gqa: call it "
                                      "with dropout_p=0.0 in eval, or write (q @ k.transpose(-2, -1) * scale)"
                                      ".softmax(-1) @ v, which compiles)",
    "TransformerEncoder": " (compile reads its layers, nn.TransformerEncoderLayer with batch_first=True: call them "
                          "in a loop, for layer in encoder.layers: x = layer(x), then encoder.norm if it has one)",
    "MultiheadAttention": " (compile writes out attn(q, k, v, need_weights=False)[0] with one in_proj_weight, "
                          "no masks, bias_k or add_zero_attn, in eval; else write the attention out with "
                          "nn.Linear, @ and softmax, which compile)",
    **{op: " (a mask computed from the input is a data-dependent branch: write the elementwise function "
           "it makes, e.g. torch.relu or F.leaky_relu; a constant mask in torch.where compiles)"
       for op in ("gt", "lt", "ge", "le", "eq", "ne")},
}


def unsupported(call: Call, node: torch.fx.Node) -> UnsupportedModuleError:
    """The error for a call no registry builds: what it is, where, why not, what is supported."""
    if node.op == "call_module":
        why = WHY_NOT.get(call.kind, "")  # a module's class name
        return UnsupportedModuleError(
            f"compile does not support module {call.title!r} of type {call.kind}{call.where}{why}; "
            f"supported: {', '.join(supported_modules())}."
        )
    what = "method" if node.op == "call_method" else "function"
    return UnsupportedModuleError(
        f"compile does not support the {what} {call.kind} (node {node.name!r}{call.where}){WHY_NOT.get(call.kind.rsplit('.', 1)[-1], '')}; "
        f"supported functions and methods: {', '.join(supported_ops())}."
    )
