//! Hypervisor identification through CPUID (x86 and x86_64 only).

/// What CPUID says about virtualization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuidHypervisor {
    /// Leaf 1 ECX bit 31 is clear: no hypervisor announces itself.
    BareMetal,
    /// The vendor signatures found at leaves 0x4000_0000, 0x4000_0100, …, in order.
    Signatures(Vec<String>),
}

/// Queries CPUID. `None` where the instruction does not exist.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
pub fn query() -> Option<CpuidHypervisor> {
    #[cfg(target_arch = "x86")]
    use std::arch::x86::__cpuid;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::__cpuid;

    // Leaf 1, ECX bit 31: "hypervisor present" (Intel SDM vol. 2A, CPUID).
    if __cpuid(1).ecx & (1 << 31) == 0 {
        return Some(CpuidHypervisor::BareMetal);
    }
    // Hypervisors publish a 12-byte signature in EBX, ECX, EDX of 0x4000_0000
    // and may publish more every 0x100 leaves: KVM with Hyper-V enlightenments
    // answers "Microsoft Hv" first and "KVMKVMKVM" at 0x4000_0100.
    let mut found = Vec::new();
    let mut leaf = 0x4000_0000u32;
    while leaf <= 0x4001_0000 {
        let r = __cpuid(leaf);
        let mut sig = Vec::with_capacity(12);
        for reg in [r.ebx, r.ecx, r.edx] {
            sig.extend_from_slice(&reg.to_le_bytes());
        }
        let sig = signature_text(&sig);
        if !sig.is_empty() {
            found.push(sig);
        }
        leaf += 0x100;
    }
    Some(CpuidHypervisor::Signatures(found))
}

/// Queries CPUID. `None` where the instruction does not exist.
#[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
pub fn query() -> Option<CpuidHypervisor> {
    None
}

/// A signature's printable text: NUL padding dropped, empty if it is not ASCII.
pub fn signature_text(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    if trimmed.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&trimmed).trim().to_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_lose_padding_and_reject_binary() {
        assert_eq!(signature_text(b"KVMKVMKVM\0\0\0"), "KVMKVMKVM");
        assert_eq!(signature_text(b"Microsoft Hv"), "Microsoft Hv");
        assert_eq!(signature_text(&[0; 12]), "");
        assert_eq!(signature_text(&[0xff, 0x01, 0x41]), "");
    }
}
