"""The sandbox's seccomp-bpf filter: which system calls a sandboxed program may not make.

Standard library only (it runs inside the sandbox, under ``python -I -S``).
The filter is a classic BPF program handed to ``prctl(PR_SET_SECCOMP)``
through :mod:`ctypes`; the sandbox's init process installs it after
``PR_SET_NO_NEW_PRIVS``, just before the untrusted program runs (only the
audit hook comes later). Like every seccomp filter it can be neither removed
nor loosened, and every thread started afterwards inherits it.

It is a deny list (the default is to allow) so that any pure-Python program
keeps working; what it denies is what would let a program act on anything but
itself, whatever the namespaces around it already hide:

* **process creation**: ``fork``, ``vfork``, ``clone`` without
  ``CLONE_THREAD`` (threads stay possible; the process count stays 1),
  ``execve``/``execveat`` (no other binary ever runs), and ``clone3`` answers
  ``ENOSYS`` so that the C library falls back to the inspectable ``clone``;
* **other processes**: ``ptrace``, ``process_vm_readv/writev``,
  ``pidfd_open``/``pidfd_send_signal``/``pidfd_getfd``, ``kcmp``,
  ``process_madvise``/``process_mrelease``, ``move_pages``/``migrate_pages``;
* **the file system and namespaces**: ``mknod``/``mknodat`` (device nodes and
  FIFOs), every mount call, ``pivot_root``, ``chroot``, ``unshare``, ``setns``,
  ``open_by_handle_at``/``name_to_handle_at``, ``fanotify_init``;
* **the network**: ``socket`` for every family but ``AF_UNIX`` (the network
  namespace has no device anyway);
* **the kernel**: loading modules, ``kexec``, ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring`` (whose operations bypass seccomp), key rings,
  ``reboot``, swap, clocks, host/domain names, ``acct``, ``quotactl``,
  ``syslog``, ``personality``, ``iopl``/``ioperm``;
* **memory outside the address-space limit**: ``memfd_create``,
  ``memfd_secret`` and System V / POSIX IPC objects, which outlive a mapping,
  and ``vmsplice``, which pins the program's pages in a pipe (one 4 KiB splice
  keeps a whole 2 MiB transparent huge page alive after ``munmap``: ~1 GiB
  held from two pipes under a 512 MiB limit);
* **disk outside the file-size limit**: ``fallocate``, whose
  ``FALLOC_FL_KEEP_SIZE`` form reserves blocks past the end of a file without
  the ``RLIMIT_FSIZE`` check (stdout and stderr are the supervisor's files on
  the host's disk);
* ``prctl(PR_SET_PDEATHSIG)``, so the program cannot undo "die with the
  sandbox's supervisor".

Denied calls fail with ``EPERM`` (the program sees ``PermissionError``); a
call made with another architecture's numbering (x32, 32-bit compat) kills
the process. Only x86_64 and aarch64 are known: elsewhere
:func:`filter_program` raises and the sandbox reports the boundary as
unavailable.
"""

import ctypes
import os
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name: (x86_64 number, aarch64 number or None where the call does not exist)
DENIED = {
    "fork": (57, None),
    "vfork": (58, None),
    "execve": (59, 221),
    "execveat": (322, 281),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "pidfd_open": (434, 434),
    "pidfd_send_signal": (424, 424),
    "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    "process_madvise": (440, 440),
    "process_mrelease": (448, 448),
    "move_pages": (279, 239),
    "migrate_pages": (256, 238),
    "mknod": (133, None),
    "mknodat": (259, 33),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "unshare": (272, 97),
    "setns": (308, 268),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "fanotify_init": (300, 262),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "sethostname": (170, 161),
    "setdomainname": (171, 162),
    "acct": (163, 89),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "syslog": (103, 116),
    "personality": (135, 92),
    "vhangup": (153, 58),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "clock_adjtime": (305, 266),
    "adjtimex": (159, 171),
    "iopl": (172, None),
    "ioperm": (173, None),
    "lookup_dcookie": (212, 18),
    "uselib": (134, None),
    "memfd_create": (319, 279),
    "memfd_secret": (447, 447),
    "shmget": (29, 194),
    "shmat": (30, 196),
    "msgget": (68, 186),
    "semget": (64, 190),
    "mq_open": (240, 180),
    "vmsplice": (278, 75),
    "fallocate": (285, 47),
}
# Calls allowed only for some first arguments: (x86_64, aarch64).
CLONE = (56, 220)
CLONE3 = (435, 435)
SOCKET = (41, 198)
PRCTL = (157, 167)
# Used by the sandbox's own set-up, before the filter exists.
PIVOT_ROOT = DENIED["pivot_root"]
CAPSET = (126, 91)

CLONE_THREAD = 0x00010000
AF_UNIX = 1
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
X32_SYSCALL_BIT = 0x40000000

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
EPERM, ENOSYS = 1, 38
# BPF opcodes: load word at absolute offset, jumps on the accumulator, return.
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
NR, ARCH, ARG0 = 0, 4, 16  # offsets in struct seccomp_data (ARG0: its low 32 bits)


def machine() -> str:
    name = os.uname().machine.lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def syscall_number(pair: tuple[int, int | None]) -> int:
    """This machine's number for a ``(x86_64, aarch64)`` pair."""
    number = pair[0] if machine() == "x86_64" else pair[1]
    if number is None:
        raise OSError(f"no such system call on {machine()}")
    return number


def filter_program() -> list[tuple[int, int, int, int]]:
    """The filter as ``(code, jt, jf, k)`` instructions for this machine."""
    arch = machine()
    if arch not in AUDIT_ARCH:
        raise OSError(f"no seccomp filter for the {arch} architecture")
    column = 0 if arch == "x86_64" else 1
    errno = lambda code: (RET, 0, 0, RET_ERRNO | code)  # noqa: E731
    prog = [
        (LD_ABS, 0, 0, ARCH),
        (JEQ, 1, 0, AUDIT_ARCH[arch]),
        (RET, 0, 0, RET_KILL_PROCESS),
        (LD_ABS, 0, 0, NR),
    ]
    if arch == "x86_64":  # the x32 ABI shares the architecture value: refuse its numbers
        prog += [(JGE, 0, 1, X32_SYSCALL_BIT), (RET, 0, 0, RET_KILL_PROCESS)]
    for pair in DENIED.values():
        if pair[column] is not None:
            prog += [(JEQ, 0, 1, pair[column]), errno(EPERM)]
    prog += [(JEQ, 0, 1, CLONE3[column]), errno(ENOSYS)]
    # (syscall, first-argument test, allow when the test is true?)
    conditional = (
        (CLONE[column], JSET, CLONE_THREAD, True),
        (SOCKET[column], JEQ, AF_UNIX, True),
        (PRCTL[column], JEQ, PR_SET_PDEATHSIG, False),
    )
    for number, test, value, allow_if in conditional:
        allowed, denied = (RET, 0, 0, RET_ALLOW), errno(EPERM)
        first, second = (allowed, denied) if allow_if else (denied, allowed)
        # a non-matching syscall skips the block; the accumulator still holds its number
        prog += [(JEQ, 0, 4, number), (LD_ABS, 0, 0, ARG0), (test, 0, 1, value), first, second]
    prog.append((RET, 0, 0, RET_ALLOW))
    return prog


def install(libc: ctypes.CDLL) -> None:
    """Install the filter on the calling thread (and what it starts); raises OSError on failure."""
    prog = filter_program()
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buffer = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(buffer))
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"installing the seccomp filter failed: {os.strerror(error)}")
