//! Linux host parsers on the captured /proc files and statvfs results.

use chouette_boards::linux::{
    busy_percent, is_physical, mounts, net_dev, parse_loadavg, parse_meminfo, parse_stat_cpu,
    physical_mounts, stat_cores, CpuTimes, StatVfs,
};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/linux/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn proc_stat() {
    let text = fixture("proc_stat.txt");
    let t = parse_stat_cpu(&text).unwrap();
    assert_eq!(
        t,
        CpuTimes {
            user: 107376,
            nice: 0,
            system: 11033,
            idle: 83484,
            iowait: 1435,
            irq: 0,
            softirq: 424,
            steal: 544,
            guest: 0,
            guest_nice: 0
        }
    );
    assert_eq!(t.total(), 204296);
    assert_eq!(t.busy(), 204296 - 83484 - 1435);
    let cores: Vec<_> = stat_cores(&text).map(|r| r.unwrap()).collect();
    assert_eq!(cores.len(), 2);
    assert_eq!((cores[1].0, cores[1].1.user, cores[1].1.idle), (1, 57623, 38454));
    // Since boot: busy / total = 119377 / 204296 = 58.43...%.
    assert_eq!(busy_percent(&CpuTimes::default(), &t), 58.4);
}

#[test]
fn proc_meminfo() {
    let m = parse_meminfo(&fixture("proc_meminfo.txt")).unwrap();
    assert_eq!(m.total, 24731700 * 1024);
    assert_eq!(m.free, 19420404 * 1024);
    assert_eq!(m.available, Some(23157764 * 1024));
    assert_eq!((m.buffers, m.cached, m.sreclaimable), (89080 * 1024, 3765776 * 1024, 200160 * 1024));
    assert_eq!(m.used_bytes(), (24731700 - 23157764) * 1024);
    assert_eq!(m.available_bytes(), 23157764 * 1024);
}

#[test]
fn proc_loadavg() {
    let l = parse_loadavg(&fixture("proc_loadavg.txt")).unwrap();
    assert_eq!((l.one, l.five, l.fifteen, l.running, l.total), (1.46, 1.77, 1.09, 2, 107));
}

#[test]
fn proc_mounts_physical_deduplicated() {
    let text = fixture("proc_mounts.txt");
    assert_eq!(mounts(&text).count(), 19);
    assert_eq!(mounts(&text).filter(is_physical).count(), 1);
    let phys: Vec<_> = physical_mounts(&text).map(|m| (m.device, m.mount_point, m.fstype)).collect();
    assert_eq!(phys, vec![("/dev/vda", "/", "ext4")]);
    let twice = "/dev/sda1 / ext4 rw 0 0\n/dev/sda1 /mnt ext4 rw 0 0\n/dev/sdb1 /d\\040x vfat rw 0 0\n";
    let phys: Vec<_> = physical_mounts(twice).map(|m| m.mount_point).collect();
    assert_eq!(phys, vec!["/", "/d\\040x"]);
}

#[test]
fn proc_net_dev_skips_lo() {
    let text = fixture("proc_net_dev.txt");
    let ifaces: Vec<_> =
        net_dev(&text).map(|r| r.unwrap()).map(|i| (i.iface, i.rx_bytes, i.tx_bytes)).collect();
    assert_eq!(ifaces, vec![("ifb0", 0, 0), ("ifb1", 0, 0), ("eth0", 230491953, 850074)]);
    let glued = "  eth1:123456789012 5 0 0 0 0 0 0 77 6 0 0 0 0 0 0\n";
    let i = net_dev(glued).next().unwrap().unwrap();
    assert_eq!(
        (i.iface, i.rx_bytes, i.rx_packets, i.tx_bytes, i.tx_packets),
        ("eth1", 123456789012, 5, 77, 6)
    );
}

/// statvfs.txt holds `os.statvfs` for `/`; df_B1.txt was taken a moment later (one 4 KiB block apart).
#[test]
fn statvfs_arithmetic() {
    let text = fixture("statvfs.txt");
    let line = text.lines().next().unwrap();
    let field = |k: &str| -> u64 {
        line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap().parse().unwrap()
    };
    let s = StatVfs {
        f_frsize: field("f_frsize"),
        f_blocks: field("f_blocks"),
        f_bfree: field("f_bfree"),
        f_bavail: field("f_bavail"),
        f_files: field("f_files"),
        f_ffree: field("f_ffree"),
    };
    assert_eq!(s.total_bytes(), 270553174016);
    assert_eq!(s.used_bytes(), (66053021 - 62507514) * 4096);
    assert_eq!(s.free_bytes(), 20275965 * 4096);
    // df -B1: Used 14522400768, Available 83050348544, one block apart.
    assert_eq!(s.used_bytes().abs_diff(14522400768), 4096);
    assert_eq!(s.free_bytes().abs_diff(83050348544), 4096);
}
