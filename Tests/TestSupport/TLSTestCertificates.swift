/// Self-signed certificates (EC P-256, valid until 2126) for the HTTP client's TLS tests, made
/// with `openssl req -x509 -newkey ec -addext "subjectAltName=DNS:…"`. Test-only keys.
public enum TLSTestCertificates {
    /// For the name `localhost`.
    public static let localhost = (
        certificatePEM: """
        -----BEGIN CERTIFICATE-----
        MIIBtzCCAV2gAwIBAgIUapNruGY5HFMNCyLonqpwFALityQwCgYIKoZIzj0EAwIw
        JTEjMCEGA1UEAwwaY2xvc2VvcmRlcmQgdGVzdCBsb2NhbGhvc3QwIBcNMjYxMTMw
        MDY1OTQzWhgPMjEyNjExMDYwNjU5NDNaMCUxIzAhBgNVBAMMGmNsb3Nlb3JkZXJk
        IHRlc3QgbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpG3gnwrW
        EBsJSVU4pVG/lIFKWZ9y7n1wMuJUQ6WjmgKrIuRtoBfgYia0CVu0AIWomzJdtZKD
        vpgndMjzOkuw+aNpMGcwHQYDVR0OBBYEFGfxyPFsBd0oKNQLNBdZ0r1XThHFMB8G
        A1UdIwQYMBaAFGfxyPFsBd0oKNQLNBdZ0r1XThHFMBQGA1UdEQQNMAuCCWxvY2Fs
        aG9zdDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIHjzaJ0L/ZBz
        k+g27BG6Qdg5E8Bhbj7Yrmw4oP9t/r/dAiEAva6XxcntjhguH42wUor1h6tDz61Q
        Q6r9i4G8pp65N1k=
        -----END CERTIFICATE-----
        """,
        privateKeyPEM: """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgprTd7OsHlXqZMoej
        v5svbX+mQw34hFcAtJA0cTK2WR+hRANCAASkbeCfCtYQGwlJVTilUb+UgUpZn3Lu
        fXAy4lRDpaOaAqsi5G2gF+BiJrQJW7QAhaibMl21koO+mCd0yPM6S7D5
        -----END PRIVATE KEY-----
        """
    )

    /// For the name `elsewhere.test`: presented at `localhost`, it names the wrong host.
    public static let elsewhere = (
        certificatePEM: """
        -----BEGIN CERTIFICATE-----
        MIIBvDCCAWKgAwIBAgIUf899O3M8uHMKz6DTAw69CpyQM8wwCgYIKoZIzj0EAwIw
        JTEjMCEGA1UEAwwaY2xvc2VvcmRlcmQgdGVzdCBlbHNld2hlcmUwIBcNMjYxMTMw
        MDY1OTQzWhgPMjEyNjExMDYwNjU5NDNaMCUxIzAhBgNVBAMMGmNsb3Nlb3JkZXJk
        IHRlc3QgZWxzZXdoZXJlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES6y3iswS
        S4YmIPN9AgOKqFpkrnjW3J/rcpZ0Woh5rXt1pVXPqXcXwSRFVE0CM70DbaIZGX9K
        sNtLZpbQc3+ipKNuMGwwHQYDVR0OBBYEFPhdLACQ32a7SZVplYRCICjCdGr1MB8G
        A1UdIwQYMBaAFPhdLACQ32a7SZVplYRCICjCdGr1MBkGA1UdEQQSMBCCDmVsc2V3
        aGVyZS50ZXN0MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgPhyq
        QacNS72ql9llOZAWZnRxHdMReNISNAdoxaDzLnwCIQD4w+hDSwkgn2eGBznMSLiX
        ZZxB5wI3Uv+IOiV3n7lTGQ==
        -----END CERTIFICATE-----
        """,
        privateKeyPEM: """
        -----BEGIN PRIVATE KEY-----
        MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi4jYIz8+/l8vOwMt
        Nzno1BbN7pXGi8r2QU3/pEoIZCWhRANCAARLrLeKzBJLhiYg830CA4qoWmSueNbc
        n+tylnRaiHmte3WlVc+pdxfBJEVUTQIzvQNtohkZf0qw20tmltBzf6Kk
        -----END PRIVATE KEY-----
        """
    )
}
