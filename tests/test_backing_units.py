"""Backings of guest RAM on QEMU's command line (issue 29): the default adds nothing (a guest
boots with the argv it always had), every other kind maps to QEMU 7.2's backend options,
and impossible ones are refused before boot in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from command_lines import argv, spec

from harness.errors import ConfigError
from harness.mechanisms import make
from harness.vm.backing import ANONYMOUS, Backing


def test_the_default_backing_leaves_the_command_line_as_it_was():
    default = argv(spec())
    assert argv(spec(backing=Backing())) == default == argv(spec(backing=Backing.parse("anonymous")))
    assert default[default.index("-machine") + 1] == "q35"
    assert not any("memory-backend" in a for a in default) and "-object" not in default
    vmem = make("virtio-mem", {"boot_mib": 512}, 1024).configure(spec())
    assert "memory-backend-ram,id=vmem0-mem,size=512M" in argv(vmem)


@pytest.mark.parametrize("value, obj", [
    ("memfd", "memory-backend-memfd,id=pc.ram,size=1024M,share=on"),
    ({"kind": "memfd", "share": False, "prealloc": True},
     "memory-backend-memfd,id=pc.ram,size=1024M,share=off,prealloc=on"),
    ("memfd-hugetlb-2M", "memory-backend-memfd,id=pc.ram,size=1024M,hugetlb=on,hugetlbsize=2M,share=on"),
    ("memfd-hugetlb-1G", "memory-backend-memfd,id=pc.ram,size=1024M,hugetlb=on,hugetlbsize=1G,share=on"),
    ({"kind": "hugetlbfs", "page_size": "2M", "mem_path": "/mnt/h"},
     "memory-backend-file,id=pc.ram,size=1024M,mem-path=/mnt/h,share=on"),
    ({"kind": "tmpfs", "mem_path": "/run/t"},
     "memory-backend-file,id=pc.ram,size=1024M,mem-path=/run/t,share=on,align=2M"),
    ({"kind": "anonymous", "share": True}, "memory-backend-ram,id=pc.ram,size=1024M,share=on"),
    ({"kind": "anonymous", "prealloc": True}, "memory-backend-ram,id=pc.ram,size=1024M,prealloc=on"),
])
def test_each_backing_is_one_backend_object_the_machine_takes(value, obj):
    b = Backing.parse(value)
    args = argv(spec(memory_mib=1024, backing=b))
    assert args[args.index("-machine") + 1] == "q35,memory-backend=pc.ram"
    assert args[args.index("-object") + 1] == obj
    assert args.index("-m") < args.index("-object")


def test_virtio_mem_region_takes_the_arms_backing():
    b = Backing.parse("memfd")
    s = make("virtio-mem", {"boot_mib": 512}, 1024).configure(spec(memory_mib=1024, backing=b))
    args = argv(s)
    assert "memory-backend-memfd,id=vmem0-mem,size=512M,share=on" in args
    assert "memory-backend-memfd,id=pc.ram,size=512M,share=on" in args


def test_impossible_backings_are_refused_in_one_line():
    cases = [("ramfs", "kind 'ramfs': choose one of anonymous, memfd"),
             ("hugetlbfs", "hugetlbfs needs page_size 2M or 1G"),
             ({"kind": "memfd", "page_size": "2M"}, "page_size is for memfd-hugetlb and hugetlbfs"),
             ({"kind": "memfd", "huge": True}, "unknown key"),
             ({"kind": "memfd", "share": "yes"}, "share: true or false"),
             ({"kind": "anonymous", "mem_path": "/x"}, "mem_path is for tmpfs and hugetlbfs")]
    for value, message in cases:
        with pytest.raises(ConfigError, match=message) as e:
            Backing.parse(value, "arms[1].backing")
        assert "\n" not in str(e.value) and str(e.value).startswith("arms[1].backing")
    with pytest.raises(ConfigError, match="1000 MiB of guest RAM is not a whole number of 1G pages"):
        spec(memory_mib=1000, backing=Backing.parse("memfd-hugetlb-1G")).backing.check_guest(1000, "tcg")
    with pytest.raises(ConfigError, match="no hugetlbfs mount given"):
        argv(spec(backing=Backing.parse("hugetlbfs-2M")))


def test_guest_memfd_is_named_and_refused_under_tcg_with_the_reason():
    b = Backing.parse("guest_memfd")
    assert b.qemu_object("pc.ram", 512) == "memory-backend-memfd,id=pc.ram,size=512M,x-guest-memfd=on,share=on"
    with pytest.raises(ConfigError, match="guest_memfd: needs KVM .*this guest runs under TCG"):
        b.check_guest(1024, "tcg")
    b.check_guest(1024, "kvm")      # a KVM host may try (QEMU 11)
    with pytest.raises(ConfigError, match="needs KVM"):
        dataclasses.replace(spec(), accel="tcg", backing=b, kernel=Path("/"), initrd=Path("/"),
                            qemu=Path("/")).validate()


def test_labels_and_metadata():
    assert [Backing.parse(v).label for v in ("anonymous", "memfd", "hugetlbfs-2M", "memfd-hugetlb-1G")] == \
        ["anonymous", "memfd", "hugetlbfs-2M", "memfd-hugetlb-1G"]
    assert ANONYMOUS.is_default and not Backing.parse("memfd").is_default
    assert Backing.parse("hugetlbfs-1G").page_kib == 1 << 20 and Backing.parse("memfd").page_kib == 4
    assert Backing.parse("memfd").as_dict()["share"] is True
