import Foundation

/// A base URL taken apart once, so that no call parses it again: where to connect, whether
/// over TLS, the `Host` header and the path that prefixes every endpoint.
struct BaseURL: Hashable, Sendable {
    let tls: Bool
    /// The host to connect to: a name, or an IP address without brackets.
    let host: String
    let port: Int
    /// The `Host` header: the host as written (IPv6 in brackets), with the port unless it is the scheme's.
    let hostHeader: String
    /// The base URL's own path without a trailing slash ("" for none).
    let pathPrefix: String

    /// Nil for anything but an `http://` or `https://` URL with a host.
    init?(_ text: String) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return nil }
        tls = scheme == "https"
        let defaultPort = tls ? 443 : 80
        port = components.port ?? defaultPort
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.host = bare
        let written = bare.contains(":") ? "[\(bare)]" : bare
        hostHeader = port == defaultPort ? written : "\(written):\(port)"
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        pathPrefix = path
    }

    /// Whether `host` is an IP address: TLS then sends no server name (SNI forbids addresses).
    var hostIsAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}
