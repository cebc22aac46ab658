"""What each diagnostic code means, for `archc explain CODE`.

A diagnostic says what is wrong in one line ("`later` is used before it is
defined [E0203]"); the code leads here, to a few sentences on the rule behind
it, why the rule exists and how to fix the spec, with a minimal spec that
produces the code and the same spec fixed. tests/test_explain.py runs both
specs of every entry, so the examples stay true as archc changes, and checks
that every code archc emits has an entry.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

WIDTH = 79


@dataclass(frozen=True)
class Code:
    code: str  # E0203
    title: str  # a few words: "used before it is defined"
    text: str  # the explanation, one paragraph of plain prose
    wrong: str  # a complete spec that produces the code
    right: str  # the same spec fixed: no errors and no warnings
    inputs: dict | None = None  # input shapes by name to analyse `wrong` with (`--input`, `inputs=`)
    suffix: str = ".arch"  # the examples' format: .arch, or .cfg, .prototxt, .onnx (textual) for import codes


def _spec(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def _entry(heading: str, text: str, wrong: str, right: str, inputs: dict | None = None, suffix: str = ".arch") -> Code:
    # The heading is the code and its title, "E0203: used before it is defined", as explain()
    # prints them. (A code written as a string of its own would make tests/test_docs.py count
    # this file among the places that emit it.)
    code, _, title = heading.partition(": ")
    return Code(code, title, " ".join(text.split()), _spec(wrong), _spec(right), inputs, suffix)


_ENTRIES = (
    _entry(
        "E0101: syntax error",
        """
        The text does not follow the grammar of the language, so archc cannot
        tell what the statement means, and nothing is analysed until it is
        fixed. The message names the token archc did not expect, and the help
        says what could come there instead. Common causes are a statement split
        over two lines outside parentheses (join them, or split it only inside
        `( ... )`), `/` used for division (it always starts a stride: write
        `//`), a decimal without a digit before the point (`.5`) and a missing
        `}`.
        """,
        wrong="""
        network Dropout {
          input x: 64
          dense: 32 -> relu
          dropout: .5
        }
        """,
        right="""
        network Dropout {
          input x: 64
          dense: 32 -> relu
          dropout: 0.5
        }
        """,
    ),
    _entry(
        "E0102: cannot read or import a file",
        """
        archc could not read a file: the spec given on the command line, or a
        file named by an `import`. The path of an import is relative to the
        folder of the file that imports it, not to the folder you run archc
        from. Check the spelling and the folder, or, when the file is not
        needed, remove the import. archc reads only regular text files of up to
        1 MiB: a named pipe, a device or a socket is refused without waiting on
        it, and so is a file with a NUL byte or one that is not UTF-8 (a binary
        file is not shown).
        """,
        wrong="""
        import "blocks/missing.arch"   # there is no such file next to this spec

        network Tiny {
          input x: 3x8x8
          conv: 4 @ 3x3 -> relu
        }
        """,
        right="""
        network Tiny {
          input x: 3x8x8
          conv: 4 @ 3x3 -> relu
        }
        """,
    ),
    _entry(
        "E0104: no network, or more than one",
        """
        A spec describes exactly one network, so the file that archc analyses
        must hold exactly one `network Name { ... }`. A file with only blocks is
        a library: import it from a spec instead of analysing it. To compare two
        networks, put each into its own file and share their common blocks with
        `import`.
        """,
        wrong="""
        network Small {
          input x: 3x8x8
          conv: 4 @ 3x3
        }

        network Wide {
          input x: 3x8x8
          conv: 16 @ 3x3
        }
        """,
        right="""
        network Small {
          input x: 3x8x8
          conv: 4 @ 3x3
        }
        """,
    ),
    _entry(
        "E0201: unknown layer type",
        """
        The first word of a statement must be a layer type, such as `conv` or
        `maxpool`, or the name of a block defined in the file or imported into
        it. Layer types are written in lower case. This is usually a typo, and
        the help suggests the closest name. For a name another tool gives a
        layer (`linear`, `BatchNorm2d`, `fc`) the help gives archc's (`dense`,
        `bn`); for a layer archc does not have (`lstm`, `embedding`) it says so.
        docs/language.md lists every layer type.
        """,
        wrong="""
        network Typo {
          input x: 3x8x8
          conv: 4 @ 3x3
          maxpoo: 2x2
        }
        """,
        right="""
        network Typo {
          input x: 3x8x8
          conv: 4 @ 3x3
          maxpool: 2x2
        }
        """,
    ),
    _entry(
        "E0202: unknown layer reference",
        """
        A name in a layer's input list, the parentheses after the layer's name,
        must be a layer defined in the same network or block. Check the
        spelling: names are case-sensitive, and the help suggests the closest
        name. The name `in` means a block's input, so it only exists inside a
        block; in a network, name the `input` layer instead.
        """,
        wrong="""
        network Typo {
          input image: 3x32x32
          conv c1 (imgae): 16 @ 3x3 pad=1
        }
        """,
        right="""
        network Typo {
          input image: 3x32x32
          conv c1 (image): 16 @ 3x3 pad=1
        }
        """,
    ),
    _entry(
        "E0203: used before it is defined",
        """
        A layer can only read layers defined above it: the file is read from top
        to bottom, and this order is what keeps a network free of cycles. Move
        the layer that is read above the layer that reads it. Inside a `repeat`,
        a named layer is called `c_1`, `c_2`, ... after the loop, so the plain
        name used after the loop also gives this error; its help then proposes
        the last iteration's name. So does a name that only the branch of an
        `if` not taken defines: define it in both branches.
        """,
        wrong="""
        network Residual {
          input x: 8x8x8
          add sum (x, c)
          conv c (x): 8 @ 3x3 pad=1
        }
        """,
        right="""
        network Residual {
          input x: 8x8x8
          conv c (x): 8 @ 3x3 pad=1
          add sum (x, c)
        }
        """,
    ),
    _entry(
        "E0204: name defined twice",
        """
        Every layer in a network, and every layer in one block, needs its own
        name, because other layers and the table refer to layers by name. Rename
        one of the two layers, or leave the name out and let archc number the
        layer (`conv1`, `conv2`, ...). A name made by a `repeat` counts too: a
        `stage` in a repeat is `stage_1` in its first iteration, which clashes
        with a layer or block instance written `stage_1`. The name `in` is
        reserved for a block's input and cannot name a layer.
        """,
        wrong="""
        network Twice {
          input x: 3x8x8
          conv c: 8 @ 3x3 pad=1
          conv c: 8 @ 3x3 pad=1
        }
        """,
        right="""
        network Twice {
          input x: 3x8x8
          conv c1: 8 @ 3x3 pad=1
          conv c2: 8 @ 3x3 pad=1
        }
        """,
    ),
    _entry(
        "E0205: value of the wrong kind or out of range",
        """
        Each parameter takes one kind of value: `bias` is true or false, a
        kernel is whole numbers, `pad` is a number, a shape or a word such as
        `same`, and dropout's `p` is a decimal between 0 and 1. Some values must
        also be in a range: sizes, strides and filters are at least 1, and
        padding is never negative. The message names the parameter and what it
        accepts; give a value of that kind. The condition of an `if`, and the
        operands of `and`, `or` and `not`, are true or false: compare a number
        (`stride > 1`).
        """,
        wrong="""
        network NoBias {
          input x: 3x8x8
          conv: 8 @ 3x3 bias=no
        }
        """,
        right="""
        network NoBias {
          input x: 3x8x8
          conv: 8 @ 3x3 bias=false
        }
        """,
    ),
    _entry(
        "E0206: no such parameter",
        """
        A keyword argument `name=value` must name one of the parameters of the
        layer type or block. archc uses short names (`pad`, not `padding`), and
        the help lists every parameter the layer has, with the closest one
        first. A statement like `dense: 64/2` also ends here: `/2` is a stride,
        and `dense` has no stride.
        """,
        wrong="""
        network Padding {
          input x: 3x8x8
          conv: 8 @ 3x3 padding=1
        }
        """,
        right="""
        network Padding {
          input x: 3x8x8
          conv: 8 @ 3x3 pad=1
        }
        """,
    ),
    _entry(
        "E0207: required parameter missing",
        """
        Some parameters have no default, such as the number of filters and the
        kernel of a `conv`, or the units of a `dense`; a block parameter written
        without `=default` is required too. Give the missing value, either in
        its place among the positional arguments or as `name=value`. The help
        shows an example of the layer written in full.
        """,
        wrong="""
        network NoKernel {
          input x: 3x8x8
          conv: 8
        }
        """,
        right="""
        network NoKernel {
          input x: 3x8x8
          conv: 8 @ 3x3
        }
        """,
    ),
    _entry(
        "E0208: no place for a positional value or word",
        """
        Positional arguments fill a layer's positional parameters in order (for
        `conv`: the filters, then the kernel), and a bare word must be one of
        the words the layer knows, such as `same`. This value came after all
        the positional places were taken, or the word is not one the layer
        knows. Write other parameters as `name=value`, or a stride as `/2`; for
        a misspelled word the help suggests the closest one.
        """,
        wrong="""
        network Stride {
          input x: 3x32x32
          conv: 16 @ 3x3 2 pad=1
        }
        """,
        right="""
        network Stride {
          input x: 3x32x32
          conv: 16 @ 3x3 /2 pad=1
        }
        """,
    ),
    _entry(
        "E0209: wrong number of inputs",
        """
        Each layer type reads a fixed number of inputs: `add` and `concat` read
        two or more, most other layers read exactly one, and `input` reads
        none. A statement without parentheses reads only the statement above
        it, so a merge must list all of its inputs: `add (a, b)`. Check the
        list in the parentheses. A block reads one input, or as many as its
        `reads (...)` names, listed at the call in that order.
        """,
        wrong="""
        network Skip {
          input x: 8x8x8
          conv c: 8 @ 3x3 pad=1
          add (c)
        }
        """,
        right="""
        network Skip {
          input x: 8x8x8
          conv c: 8 @ 3x3 pad=1
          add (x, c)
        }
        """,
    ),
    _entry(
        "E0210: block calls itself or nests too deep",
        """
        A block is expanded by writing its body in place of the call, so a block
        that calls itself, directly or through other blocks, would never stop
        expanding. To stack the same layers several times, use `repeat N { ...
        }` around a call of the block. Blocks may call other blocks, but no more
        than 64 levels deep.
        """,
        wrong="""
        block stage(ch) {
          conv: ch @ 3x3 pad=1 -> relu
          stage: ch
        }

        network Deep {
          input x: 3x8x8
          stage: 8
        }
        """,
        right="""
        block stage(ch) {
          conv: ch @ 3x3 pad=1 -> relu
        }

        network Deep {
          input x: 3x8x8
          repeat 3 {
            stage: 8
          }
        }
        """,
    ),
    _entry(
        "E0211: block defined twice or named like a layer type",
        """
        A block name must be new: not the name of another block (in this file
        or an imported one) and not the name of a built-in layer type. A call
        like `dense: 16` could otherwise mean either the block or the layer.
        Rename the block, and its calls.
        """,
        wrong="""
        block dense(units) {
          dense: units -> relu
        }

        network Mlp {
          input x: 64
          dense: 16
        }
        """,
        right="""
        block dense_relu(units) {
          dense: units -> relu
        }

        network Mlp {
          input x: 64
          dense_relu: 16
        }
        """,
    ),
    _entry(
        "E0212: expression cannot be evaluated",
        """
        Arithmetic such as `ch * 2` or `ch // 2` only works on numbers and on
        the parameters of the block it is written in; any other name in an
        expression is unknown. Division by zero, and `//` or `%` on decimals,
        cannot be evaluated either, nor a size a layer's shape does not have
        (`in.length` of an image: it has channels, height and width). Add the
        name as a block parameter (with a default if you like), or write the
        number.
        """,
        wrong="""
        block wide(ch) {
          conv: ch * width @ 1x1
        }

        network Widen {
          input x: 8x4x4
          wide: 8
        }
        """,
        right="""
        block wide(ch, width=2) {
          conv: ch * width @ 1x1
        }

        network Widen {
          input x: 8x4x4
          wide: 8
        }
        """,
    ),
    _entry(
        "E0213: number or network too large",
        """
        archc refuses work that no real network needs and that would exhaust
        memory: the result of arithmetic above 2^62, a `repeat` of more than
        200,000 copies, or a network that expands to more than 200,000 layers,
        takes more than 1,000,000 steps to expand (statements expanded and
        repeat iterations, even empty ones) or has more than 32 MiB of layer
        names. Such numbers are almost always a typo, such as a repeat count
        with extra zeros or a width multiplied twice. Check the number.
        The importers apply the same bound to Darknet and Caffe files: a number
        above 2^62 (of any length) or messages nested more than 100 deep.
        """,
        wrong="""
        network Tower {
          input x: 8x8x8
          repeat 1000000 {
            conv: 8 @ 3x3 pad=1 -> relu
          }
        }
        """,
        right="""
        network Tower {
          input x: 8x8x8
          repeat 10 {
            conv: 8 @ 3x3 pad=1 -> relu
          }
        }
        """,
    ),
    _entry(
        "E0214: argument given twice",
        """
        Each parameter gets one value. Two spellings of the same parameter count
        as the same one: `/2` is `stride=2`, `same` is `pad=same`, and a
        positional value fills a parameter just as its keyword does. Keep one of
        them.
        """,
        wrong="""
        network Twice {
          input x: 3x32x32
          conv: 16 @ 3x3 /2 stride=2 pad=1
        }
        """,
        right="""
        network Twice {
          input x: 3x32x32
          conv: 16 @ 3x3 /2 pad=1
        }
        """,
    ),
    _entry(
        "E0215: nothing to read, or input inside a block",
        """
        A layer without an input list reads the statement above it, so the
        first layer of a network must be an `input` (or name what it reads), and
        the first layer of a block reads the block's input, `in`. Inputs belong
        to the network: a block cannot declare an `input`. Declare the input in
        the network and pass it to the block.
        """,
        wrong="""
        network NoInput {
          conv: 8 @ 3x3
          relu
        }
        """,
        right="""
        network NoInput {
          input x: 3x32x32
          conv: 8 @ 3x3
          relu
        }
        """,
    ),
    _entry(
        "E0216: unknown activation",
        """
        The name after `->` must be an activation layer type, such as `relu`,
        `tanh`, `sigmoid` or `softmax`. This is usually a typo; the help
        suggests the closest name and lists all activations. Arguments of an
        activation go in parentheses: `-> leaky_relu(0.2)`. A block parameter
        written after `->` in the block holds an activation: the call must pass
        one (`mb: hardswish`), and the error is at that argument.
        """,
        wrong="""
        network Act {
          input x: 3x8x8
          conv: 4 @ 3x3 -> rleu
        }
        """,
        right="""
        network Act {
          input x: 3x8x8
          conv: 4 @ 3x3 -> relu
        }
        """,
    ),
    _entry(
        "E0217: no input of that name",
        """
        An input shape given from outside the spec, with `--input NAME=CxHxW`
        on the command line or `inputs={...}` in Python, must name one of the
        network's `input` layers. The help lists the inputs the network has.
        Use one of those names; with a single input the name may be left out of
        `--input`.
        """,
        wrong="""
        # archc check digits.arch --input img=1x28x28
        network Digits {
          input image: 1x32x32
          conv: 6 @ 5x5 -> relu
        }
        """,
        right="""
        # archc check digits.arch --input image=1x28x28
        network Digits {
          input image: 1x32x32
          conv: 6 @ 5x5 -> relu
        }
        """,
        inputs={"img": (1, 28, 28)},
    ),
    _entry(
        "E0218: dense input size does not match `in=`",
        """
        `in=` on a `dense` layer states how many values you expect it to read,
        like `in_features` in PyTorch, and archc checks that number against the
        size the layers above actually give. They differ when the input image
        is not the size the network was designed for, or after a change to a
        convolution or a pool. Fix `in=` to the size archc reports, or fix the
        layers above.
        """,
        wrong="""
        network LeNet {
          input image: 1x28x28
          conv C1: 6 @ 5x5 -> tanh
          avgpool S2: 2x2 /2
          conv C3: 16 @ 5x5 -> tanh
          avgpool S4: 2x2 /2
          flatten
          dense F5: 120 in=400
          dense out: 10
        }
        """,
        right="""
        network LeNet {
          input image: 1x28x28
          conv C1: 6 @ 5x5 -> tanh
          avgpool S2: 2x2 /2
          conv C3: 16 @ 5x5 -> tanh
          avgpool S4: 2x2 /2
          flatten
          dense F5: 120 in=256
          dense out: 10
        }
        """,
    ),
    _entry(
        "E0219: misplaced or repeated `output`",
        """
        `output (a, b)` lists the layers a network returns, in that order, when
        it should return more than its last layer. It takes nothing but that
        list: no name, arguments or activation. It is written once, in the
        network itself, because a block cannot decide what the network returns.
        List all the outputs in one `output` statement.
        """,
        wrong="""
        network TwoHeads {
          input x: 64
          dense classes: 10
          dense boxes (x): 4
          output (classes)
          output (boxes)
        }
        """,
        right="""
        network TwoHeads {
          input x: 64
          dense classes: 10
          dense boxes (x): 4
          output (classes, boxes)
        }
        """,
    ),
    _entry(
        "E0301: wrong rank",
        """
        A layer got a tensor with the wrong number of dimensions, or a kernel,
        stride or padding with the wrong number of sizes. Shapes are channels
        first, and their rank decides what a layer does: a `784` input is a
        vector, `1x28x28` an image. Convolutions and pools need spatial
        dimensions, and a kernel has one size per spatial dimension (3x3 for an
        image). Give the input its channels-first shape, or the kernel the right
        number of sizes.
        """,
        wrong="""
        network Mnist {
          input digits: 784
          conv: 8 @ 3x3
        }
        """,
        right="""
        network Mnist {
          input digits: 1x28x28
          conv: 8 @ 3x3
        }
        """,
    ),
    _entry(
        "E0302: output would be empty",
        """
        The layer's output would have no values: its window (kernel and
        dilation) is larger than its input plus padding, or the input has
        already been shrunk too far by earlier strides and pools. The message
        gives the sizes. Pad the input (`pad=same` keeps the size), use a
        smaller kernel or fewer pools, or start from a larger input.
        """,
        wrong="""
        network Small {
          input x: 3x4x4
          conv: 8 @ 5x5
        }
        """,
        right="""
        network Small {
          input x: 3x4x4
          conv: 8 @ 5x5 pad=same
        }
        """,
    ),
    _entry(
        "E0303: groups do not divide the channels",
        """
        A grouped convolution splits its input channels and its filters into
        `groups` equal parts, so `groups` must divide both numbers. Choose a
        number of groups that divides both, or change the number of channels or
        filters. `groups=depthwise` sets it to the number of input channels.
        A `groupnorm` splits the channels alone, so its `groups` must divide them;
        `attention` and `sdpa` split the features into `heads` equal heads.
        """,
        wrong="""
        network Grouped {
          input x: 6x8x8
          conv: 8 @ 3x3 groups=4
        }
        """,
        right="""
        network Grouped {
          input x: 6x8x8
          conv: 8 @ 3x3 groups=2
        }
        """,
    ),
    _entry(
        "E0304: dense on a channels-first map, or reshape to another size",
        """
        A `dense` layer reads a vector, or the features on the last axis of a
        map, but this one gets an image or a sequence with its channels first
        (such as 16x5x5); put `flatten` before it, and the help says how many
        inputs that gives. To apply it at every position instead, put the
        channels last with `permute` (1x2x0 on C x H x W). A `reshape` must keep
        the number of values: 3x9x9 holds 243 values and cannot become 10x10.
        Check the target shape. `attention` and `sdpa` read sequences, L x E
        with the features last: `permute: 1x0` makes one of an E x L input.
        """,
        wrong="""
        network Head {
          input x: 16x5x5
          dense: 120 -> relu
        }
        """,
        right="""
        network Head {
          input x: 16x5x5
          flatten
          dense: 120 -> relu
        }
        """,
    ),
    _entry(
        "E0305: merged shapes disagree",
        """
        `add`, `mul`, `sub` and `div` work value by value and broadcast as torch
        does: the same rank, and each dimension equal or 1 in one input (a Cx1x1
        gate or bias over a CxHxW map).
        `concat` joins its inputs along the channels, so all other dimensions
        must agree. A convolution without padding shrinks its input: a 3x3
        kernel needs `pad=1` to keep the size for a skip connection. A change in
        channels needs a 1x1 convolution on the shortcut. A `param` keeps the
        shape written in the spec: a position embedding added to a sequence is
        written from its sizes (`in.length x in.channels`) to follow the input.
        """,
        wrong="""
        network Skip {
          input x: 8x8x8
          conv c: 8 @ 3x3
          add (x, c)
        }
        """,
        right="""
        network Skip {
          input x: 8x8x8
          conv c: 8 @ 3x3 pad=1
          add (x, c)
        }
        """,
    ),
    _entry(
        "E0306: size or count too large",
        """
        A layer's output would hold more than 2^62 values, or one of its sizes
        (a kernel, a stride, a padding), its parameters, MACs or element operations, or the
        network's totals up to it pass 2^62: no machine can store that, and it
        overflows the 64-bit counts every framework keeps. The cause is nearly
        always a wrong size, such as an input with extra digits or an upsample
        that was meant to be a pool. Check the sizes.
        """,
        wrong="""
        network Huge {
          input x: 3x2147483648x2147483648
          conv: 8 @ 3x3
        }
        """,
        right="""
        network Huge {
          input x: 3x224x224
          conv: 8 @ 3x3
        }
        """,
    ),
    _entry(
        "E0307: sequence or token ids where the layer cannot take them",
        """
        Convolutions, pools and upsampling slide over the positions of a
        channels-first map (C x L, C x H x W), but got a sequence, length x
        features with the features last (or a map whose channels `permute`
        moved): put the channels first with the `permute` the help offers, or
        leave the layer out. Integer token ids (`input ids: 512 tokens
        vocab=N`) name rows of a table: only `embedding` reads them (and
        `position_embedding`, which counts them), and `embedding`
        reads nothing else.
        """,
        wrong="""
        network Text {
          input ids: 16 tokens vocab=100
          dense: 8
        }
        """,
        right="""
        network Text {
          input ids: 16 tokens vocab=100
          embedding: 32
          dense: 8
        }
        """,
    ),
    _entry(
        "E0308: tied weight of another shape",
        """
        A `dense` with `tied=LAYER` uses that layer's weight as its own, one
        parameter for both (GPT-2's output head reads the token embedding's
        table: `dense lm_head: 50257 bias=false tied=wte`). Its weight is
        units x input features, so the layer it names must have a weight of
        exactly that shape: an `embedding` of `units` rows of the input's
        width, or a `dense` of the same units and inputs. Give the layer as
        many units as the table has rows (the help offers it), feed it
        features of the table's width, or tie it to the layer you meant.
        """,
        wrong="""
        network Tied {
          input ids: 16 tokens vocab=100
          embedding wte: 32
          dense head: 90 bias=false tied=wte
        }
        """,
        right="""
        network Tied {
          input ids: 16 tokens vocab=100
          embedding wte: 32
          dense head: 100 bias=false tied=wte
        }
        """,
    ),
    _entry(
        "E0401: cannot read the source file",
        """
        A Darknet `.cfg` or Caffe `.prototxt` file has a line its format does
        not allow, or a `.onnx` file is not an ONNX model (truncated, or
        another kind of file), so archc cannot tell what it means and imports
        nothing. A
        `.cfg` is a list of `[section]` headers, each followed by `key=value`
        lines; comments start with `#` or `;`. A `.prototxt` is protobuf text:
        `name: value` fields and `name { ... }` messages. The message names
        what archc found and the caret shows where.
        """,
        wrong="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad 1
        activation=leaky
        """,
        right="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky
        """,
        suffix=".cfg",
    ),
    _entry(
        "E0402: unsupported section or layer type",
        """
        The file uses a Darknet section, a Caffe layer type or an ONNX operator
        that archc does not read, either because archc has no layer that
        computes it (a
        recurrent layer, a parametric ReLU) or because the name is misspelt.
        archc never skips a layer silently: the figures would be wrong. The
        help suggests the closest name archc knows, and docs/importers.md lists
        every section and layer type with what it becomes.
        """,
        wrong="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky

        [maxpol]
        size=2
        stride=2
        """,
        right="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky

        [maxpool]
        size=2
        stride=2
        """,
        suffix=".cfg",
    ),
    _entry(
        "E0403: a value the source format does not allow",
        """
        A setting of a `.cfg` or `.prototxt` file has a value of the wrong kind
        or out of its range: a word where a number is needed, a negative
        size, an activation Darknet does not have. The caret points at the
        value; the help lists what is allowed where the list is short. Fix the
        value in the source file.
        """,
        wrong="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=lekay
        """,
        right="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky
        """,
        suffix=".cfg",
    ),
    _entry(
        "E0404: a setting the network needs is missing",
        """
        A layer lacks a setting that has no default (a Caffe convolution's
        `num_output`), the network has no input size (Darknet's `[net]`
        needs `width`, `height` and `channels`), or an input's shape is not in
        the file at all: a Caffe `Data` layer reads it from its database. Add
        the setting to the file, or give the input's shape on the command line
        with `--input NAME=CxHxW` (the `inputs=` argument of `archc.load`), as
        for an ONNX input with a symbolic dimension other than the batch.
        """,
        wrong="""
        name: "Tiny"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
        layer {
          name: "conv1"
          type: "Convolution"
          bottom: "data"
          top: "conv1"
          convolution_param { kernel_size: 3 }
        }
        """,
        right="""
        name: "Tiny"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
        layer {
          name: "conv1"
          type: "Convolution"
          bottom: "data"
          top: "conv1"
          convolution_param { num_output: 16 kernel_size: 3 }
        }
        """,
        suffix=".prototxt",
    ),
    _entry(
        "E0405: a setting archc cannot represent",
        """
        The source tool supports this setting, but archc has no layer that
        computes it, so the network cannot be analysed faithfully: stochastic
        pooling, an element-wise product, binary (XNOR) convolutions, shortcut
        weights. archc stops rather than count a different network. Remove the
        setting if it does not matter for what you want to know, or describe
        the network in a `.arch` spec with the nearest layers archc has.
        """,
        wrong="""
        name: "Tiny"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
        layer {
          name: "pool1"
          type: "Pooling"
          bottom: "data"
          top: "pool1"
          pooling_param { pool: STOCHASTIC kernel_size: 2 stride: 2 }
        }
        """,
        right="""
        name: "Tiny"
        input: "data"
        input_shape { dim: 1 dim: 3 dim: 32 dim: 32 }
        layer {
          name: "pool1"
          type: "Pooling"
          bottom: "data"
          top: "pool1"
          pooling_param { pool: MAX kernel_size: 2 stride: 2 }
        }
        """,
        suffix=".prototxt",
    ),
    _entry(
        "E0406: a reference to no layer",
        """
        A Darknet `[route]` or `[shortcut]` names a layer index that does not
        exist before it, or a Caffe layer reads a blob (`bottom`) that no layer
        above it writes (`top`). Darknet numbers its layers from 0, `[net]` not
        counted; a negative index counts back from the layer itself, so -1 is
        the layer just above. In Caffe, check the spelling of the blob and
        that the layer writing it comes first.
        """,
        wrong="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky

        [route]
        layers=-2
        """,
        right="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky

        [route]
        layers=-1
        """,
        suffix=".cfg",
    ),
    _entry(
        "W0301: stride does not divide evenly",
        """
        A convolution or pool moves its window by the stride and stops when the
        next step would run past the end of the input, so real input pixels at
        the end are never read. This is a warning, not an error: the network
        works, but it ignores part of its input, often by accident. The help
        gives a padding or an input size that makes the division exact.
        """,
        wrong="""
        network Uneven {
          input x: 3x7x7
          conv: 4 @ 3x3 /3
        }
        """,
        right="""
        network Uneven {
          input x: 3x7x7
          conv: 4 @ 3x3 /3 pad=1
        }
        """,
    ),
    _entry(
        "W0302: unused layer",
        """
        Nothing reads this layer's output, and the network does not return it:
        a network returns its last layer, or the layers listed in `output (a,
        b)`. The layer costs parameters and time but never changes the result,
        which usually means that a later layer names the wrong input. Make a
        later layer read it, delete it, or, if it is meant as an extra output,
        list it in `output`. An `input` that nothing reads gets this warning
        too.
        """,
        wrong="""
        network Unused {
          input x: 3x32x32
          conv c1: 16 @ 3x3 pad=1 -> relu
          conv c2: 32 @ 3x3 pad=1 -> relu
          maxpool (c1): 2x2
          flatten
          dense: 10
        }
        """,
        right="""
        network Unused {
          input x: 3x32x32
          conv c1: 16 @ 3x3 pad=1 -> relu
          conv c2: 32 @ 3x3 pad=1 -> relu
          maxpool (c2): 2x2
          flatten
          dense: 10
        }
        """,
    ),
    _entry(
        "W0303: a setting that does nothing",
        """
        The layer has a setting that cannot change what it computes: the
        `dropout` of an `lstm` or `gru` drops the outputs between its stacked
        layers, and with one layer there are none (torch warns the same). Stack
        layers (`layers=2`) to drop between them, write `dropout=0`, or put a
        `dropout` layer after it to drop its output.
        """,
        wrong="""
        network Tagger {
          input x: 32x50
          permute seq: 1x0
          lstm: 64 dropout=0.2
        }
        """,
        right="""
        network Tagger {
          input x: 32x50
          permute seq: 1x0
          lstm: 64 layers=2 dropout=0.2
        }
        """,
    ),
    _entry(
        "W0401: a setting archc ignores",
        """
        The file sets something archc does not read: a key Darknet does not
        know either (Darknet prints "Unused field" for it), or a Caffe field
        that changes no figure. Often it is a misspelt key, and the setting
        meant to be given falls back to its default: `filtres=16` leaves
        `filters` at 1. Check the spelling; the help suggests the key archc
        expected.
        """,
        wrong="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filtres=16
        size=3
        pad=1
        activation=leaky
        """,
        right="""
        [net]
        width=32
        height=32
        channels=3

        [convolutional]
        filters=16
        size=3
        pad=1
        activation=leaky
        """,
        suffix=".cfg",
    ),
    _entry(
        "W0402: a bias restored as zeros",
        """
        An ONNX attention adds a bias in one projection and none in the other,
        and archc's `attention` has both or neither. torch.onnx.export leaves
        out a bias that is all zeros, as torchvision starts the out-projection's,
        so archc reads the missing one as zeros: the outputs are the same and the
        figures count it, as the model does. If the model truly lacks that bias,
        its count is higher by that many params; export with `optimize=False` to
        keep every bias in the file. The examples are ONNX's textual form, which
        `onnx.parser.parse_model` reads.
        """,
        wrong="""
        <ir_version: 8, opset_import: ["" : 17]>
        attention (int64[1,2] ids) => (float[1,2,4] y)
        <float[5,4] table = {
          0.3, 0.1, 0.1, -0.2, -0.2, -0.3, -0.3, -0.3, -0.2, 0.2, 0.1, 0.3,
          0.1, 0.1, 0.3, 0.2, 0.1, 0.1, 0.1, 0.3},
         float[4,12] w_in = {
          -0.2, 0.2, 0.2, -0.3, -0.1, 0.3, 0.1, -0.3, 0.2, 0.2, 0.3, -0.2,
          -0.3, 0.3, -0.3, 0.1, -0.3, -0.2, -0.1, -0.1, -0.1, -0.3, -0.3, -0.3,
          -0.3, 0.2, 0.1, 0.1, -0.2, 0.1, 0.2, -0.1, -0.1, 0.3, 0.2, 0.3,
          -0.1, 0.2, 0.3, 0.1, 0.3, 0.2, 0.2, -0.1, 0.3, -0.3, 0.1, 0.2},
         float[12] b_in = {
          0.3, 0.1, -0.1, -0.2, -0.1, -0.1, 0.2, 0.3, -0.3, 0.3, 0.1, -0.1},
         float[4,4] w_out = {
          0.2, 0.1, -0.2, -0.2, 0.2, 0.1, 0.1, -0.1, 0.2, -0.1, -0.2, 0.3,
          -0.2, -0.2, 0.2, 0.1},
         int64[4] heads = {1, 2, 2, 2}, int64[3] joined = {1, 2, 4},
         float scale = {0.70710677}>
        {
          x = Gather(table, ids)
          p = MatMul(x, w_in)
          qkv = Add(p, b_in)
          q, k, v = Split<axis = 2>(qkv)
          q2 = Reshape(q, heads)
          k2 = Reshape(k, heads)
          v2 = Reshape(v, heads)
          qh = Transpose<perm = [0, 2, 1, 3]>(q2)
          kt = Transpose<perm = [0, 2, 3, 1]>(k2)
          vh = Transpose<perm = [0, 2, 1, 3]>(v2)
          s = MatMul(qh, kt)
          z = Mul(s, scale)
          a = Softmax<axis = -1>(z)
          r = MatMul(a, vh)
          rt = Transpose<perm = [0, 2, 1, 3]>(r)
          h = Reshape(rt, joined)
          y = MatMul(h, w_out)
        }
        """,
        right="""
        <ir_version: 8, opset_import: ["" : 17]>
        attention (int64[1,2] ids) => (float[1,2,4] y)
        <float[5,4] table = {
          0.3, 0.1, 0.1, -0.2, -0.2, -0.3, -0.3, -0.3, -0.2, 0.2, 0.1, 0.3,
          0.1, 0.1, 0.3, 0.2, 0.1, 0.1, 0.1, 0.3},
         float[4,12] w_in = {
          -0.2, 0.2, 0.2, -0.3, -0.1, 0.3, 0.1, -0.3, 0.2, 0.2, 0.3, -0.2,
          -0.3, 0.3, -0.3, 0.1, -0.3, -0.2, -0.1, -0.1, -0.1, -0.3, -0.3, -0.3,
          -0.3, 0.2, 0.1, 0.1, -0.2, 0.1, 0.2, -0.1, -0.1, 0.3, 0.2, 0.3,
          -0.1, 0.2, 0.3, 0.1, 0.3, 0.2, 0.2, -0.1, 0.3, -0.3, 0.1, 0.2},
         float[12] b_in = {
          0.3, 0.1, -0.1, -0.2, -0.1, -0.1, 0.2, 0.3, -0.3, 0.3, 0.1, -0.1},
         float[4,4] w_out = {
          0.2, 0.1, -0.2, -0.2, 0.2, 0.1, 0.1, -0.1, 0.2, -0.1, -0.2, 0.3,
          -0.2, -0.2, 0.2, 0.1},
         int64[4] heads = {1, 2, 2, 2}, int64[3] joined = {1, 2, 4},
         float scale = {0.70710677},
         float[4] b_out = {0.1, 0.2, 0.3, 0.1}>
        {
          x = Gather(table, ids)
          p = MatMul(x, w_in)
          qkv = Add(p, b_in)
          q, k, v = Split<axis = 2>(qkv)
          q2 = Reshape(q, heads)
          k2 = Reshape(k, heads)
          v2 = Reshape(v, heads)
          qh = Transpose<perm = [0, 2, 1, 3]>(q2)
          kt = Transpose<perm = [0, 2, 3, 1]>(k2)
          vh = Transpose<perm = [0, 2, 1, 3]>(v2)
          s = MatMul(qh, kt)
          z = Mul(s, scale)
          a = Softmax<axis = -1>(z)
          r = MatMul(a, vh)
          rt = Transpose<perm = [0, 2, 1, 3]>(r)
          h = Reshape(rt, joined)
          o = MatMul(h, w_out)
          y = Add(o, b_out)
        }
        """,
        suffix=".onnx",
    ),
)

CODES: dict[str, Code] = {entry.code: entry for entry in _ENTRIES}


def explain(code: str) -> str:
    """One code's explanation as plain text; raises KeyError for an unknown code."""
    entry = CODES[code.strip().upper()]
    lines = [f"{entry.code}: {entry.title}", ""]
    lines += _wrap(entry.text)
    where = "" if entry.suffix == ".arch" else f" (a {_FORMATS[entry.suffix]} file)"
    for label, spec in ((f"Wrong{where}:", entry.wrong), (f"Right{where}:", entry.right)):
        lines += ["", label]
        lines += [f"    {line}" if line else "" for line in spec.splitlines()]
    return "\n".join(lines)


_FORMATS = {".cfg": "Darknet .cfg", ".prototxt": "Caffe .prototxt", ".onnx": "textual ONNX"}


def _wrap(text: str) -> list[str]:
    """Lines of at most WIDTH columns that never break inside a `code span`."""
    kept = re.sub(r"`[^`]*`", lambda m: m[0].replace(" ", "\0"), text)
    lines = textwrap.wrap(kept, WIDTH, break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]
