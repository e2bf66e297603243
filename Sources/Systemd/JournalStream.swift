#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Whether stderr is connected to the systemd journal: `$JOURNAL_STREAM` holds the device
/// and inode (`DEV:INO`) of the journal's stream, and they match stderr's.
public enum JournalStream {
    public static func stderrIsJournal(journalStream: String? = getenv("JOURNAL_STREAM").map { String(cString: $0) }) -> Bool {
        guard let journalStream else { return false }
        let parts = journalStream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var status = stat()
        guard fstat(STDERR_FILENO, &status) == 0 else { return false }
        return UInt64(status.st_dev) == device && UInt64(status.st_ino) == inode
    }
}
