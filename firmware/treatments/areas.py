# Treatment areas: which fingers an area name or an explicit bit mask covers.
# A mask is a bytearray with one 0/1 entry per finger (finger index = row * cols + col).

AREAS = ("upper", "middle", "lower", "full")


def _rows(board, name):
    if name == "full":
        return 0, board.rows
    if isinstance(name, str) and name in board.region_rows and name in AREAS:
        return board.region_rows[name]
    raise ValueError("unknown area %r (known: %s)" % (name, ", ".join(AREAS)))


def area_mask(board, name):
    start, end = _rows(board, name)
    if start >= end:
        raise ValueError("area %r has no fingers on this board" % (name,))
    cols = board.cols
    mask = bytearray(board.finger_count)
    for i in range(start * cols, end * cols):
        mask[i] = 1
    return mask


def mask_from_bits(board, bits):
    # bit i set = finger i in the area
    n = board.finger_count
    if type(bits) is not int:
        raise ValueError("mask must be an integer bit mask, got %r" % (bits,))
    if bits <= 0:
        raise ValueError("no finger selected" if bits == 0 else "negative bit mask")
    if bits >> n:
        raise ValueError("bits beyond finger %d (this board has %d fingers)" % (n - 1, n))
    mask = bytearray(n)
    for i in range(n):
        mask[i] = (bits >> i) & 1
    return mask


def count(mask):
    # number of fingers a mask selects
    k = 0
    for v in mask:
        if v:
            k += 1
    return k
