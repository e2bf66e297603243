import Foundation
import WeChatPay

/// Key files and systemd credentials: where a merchant's key is, and reading it safely.
extension ConfigurationLoader {
    /// Where `NAME_file` or `NAME_credential` points: exactly one must be given. Returns the
    /// dotted key and the file's path (nil for a credential when keys are not being read).
    static func locate(_ section: MappingReader, name: String, what: String, context: ConfigurationContext)
        throws(ConfigurationError) -> (key: String, path: String)?
    {
        let (path, fail) = (section.path, context.fail)
        let file = try section.string("\(name)_file")
        let credential = try section.string("\(name)_credential")
        switch (file, credential) {
        case (let file?, nil) where !file.isEmpty:
            return (
                section.keyPath("\(name)_file"), file.hasPrefix("/") ? file : context.baseDirectory.appending(path: file).path
            )
        case (nil, let credential?) where !credential.isEmpty:
            let key = section.keyPath("\(name)_credential")
            guard !credential.contains("/") else { throw fail(key, "a credential name has no '/', got \"\(credential)\"") }
            guard context.readKeys && context.readCredentials else { return nil }
            guard let directory = context.environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty else {
                throw fail(
                    key,
                    "$CREDENTIALS_DIRECTORY is not set: load it with LoadCredential=\(credential):/path in the unit, or use \(name)_file"
                )
            }
            return (key, URL(fileURLWithPath: directory).appending(path: credential).path)
        case (.some, .some):
            throw fail(path, "give \(name)_file or \(name)_credential, not both")
        default:
            throw fail(section.keyPath("\(name)_file"), "required: \(name)_file (\(what)) or \(name)_credential")
        }
    }

    /// The largest key file read: a PEM RSA-4096 private key is about 3.3 KB.
    static let maximumKeyFileSize = 64 * 1024

    /// Reads a key file's text; with `ownerOnly`, refuses a file others can access. A
    /// symbolic link (a Kubernetes Secret volume, a secret store's mount) is followed and the
    /// file it leads to is judged; a directory or anything but a regular file is refused.
    static func readText(
        at path: String, key: String, ownerOnly: Bool, what: String = "key file",
        fail: (String, String) -> ConfigurationError
    ) throws(ConfigurationError) -> String {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw fail(key, "cannot read \(what) \(path): \(String(cString: strerror(errno)))")
        }
        var link = stat()
        let isLink = lstat(path, &link) == 0 && link.st_mode & S_IFMT == S_IFLNK
        let resolved = isLink ? URL(fileURLWithPath: path).resolvingSymlinksInPath().path : path
        let file = isLink ? "\(what) \(path) (a link to \(resolved))" : "\(what) \(path)"
        switch status.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw fail(key, "\(file) is a directory, not a file holding the key")
        default: throw fail(key, "\(file) is not a regular file")
        }
        guard status.st_size <= maximumKeyFileSize else {
            throw fail(key, "\(file) has \(status.st_size) bytes: a key file holds one key (at most \(maximumKeyFileSize) bytes)")
        }
        let permissions = Int(status.st_mode & 0o777)
        if ownerOnly && permissions & 0o077 != 0 {
            throw fail(
                key,
                "\(file) is accessible to others than its owner (mode \(String(permissions, radix: 8))): run chmod 600 on "
                    + "\(resolved) (in a Kubernetes Secret volume, set defaultMode: 0400)")
        }
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw fail(key, "cannot read \(what) \(path): \(describe(error))")
        }
    }

    /// Reads a key file: its text less surrounding whitespace must be a 32-character key, and
    /// only its owner may have access to it. Errors never quote the file's content.
    public static func readKey(
        at path: String, key: String, fail: (String, String) -> ConfigurationError
    ) throws(ConfigurationError) -> MerchantKey {
        let text = try readText(at: path, key: key, ownerOnly: true, fail: fail)
        do {
            return try MerchantKey(text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            throw fail(key, "key file \(path) does not hold an API v2 key: \(error)")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? CocoaError, let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }
}
