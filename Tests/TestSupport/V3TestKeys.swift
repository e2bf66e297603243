import Foundation
import WeChatPay

/// Fixed RSA keys for API v3 tests, generated with openssl (`openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048`), and signatures openssl computed with them
/// (`openssl dgst -sha256 -sign`), so the tests check closeorderd against openssl.
public enum V3TestKeys {
    /// The id the tests give the WeChat Pay public key.
    public static let wechatpayPublicKeyID = "PUB_KEY_ID_0119000001092025010100000000000001"

    /// Merchant 1900000109 on API v3, with the keys below.
    public static var credentials: V3Credentials {
        // swift-format-ignore
        try! V3Credentials(
            mchID: "1900000109", serialNo: merchantSerialNo, privateKeyPEM: merchantPrivateKey,
            wechatpayPublicKeyPEM: wechatpayPublicKey, wechatpayPublicKeyID: wechatpayPublicKeyID)
    }

    public static let merchantSerialNo = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    public static let merchantPrivateKey = """
        -----BEGIN PRIVATE KEY-----
        MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDT++EYfOC7GX4Z
        mA7w8GhjLWywiNuAqVG5I+mjEXJVGcIUO3lBUUXOFqTLEO3PUjY93y+7ZHdugQnw
        LR/kt0I+TY0Pj3VHCs4wBUrhDG30IdhkGQn8aW4yVpk6HZibNoJKSjsp7eIbs30z
        SBxxJCynNPq5BTXojO/So5s/TiE1LRwwIKjpPgzKbVuH2pt1BeJNu4Wbg64y2o2a
        WkV2tS1H63BMKG+/pM0eILtF1e9ZJAlvymB8cWezxnCSRatsETI4BWbacJ90lDw8
        2YCraLH2s9fGGN4Zf/IiIyIPQ2CtlYS0iq66MojYCSC6arSDfkK6Nuach9O/n5vh
        BiI5Ff9tAgMBAAECggEAJ2sGa9HIzjHK14KFgLsLhimrtNX2DyItDqLFbquvWXC9
        PJrkjMdKlixyv0nqFqugZ3fpfcyMQtGe4fjaHeMP39r22IZiFfBF7/sD9f4kMgnb
        HZ3kU/nc4mJlAr//IRmNN7g+8SiJa4JATTljBIzn+r2ow5/a6t/ONppyo15pYWQn
        kwfA0eM+byZhdbAb7eE3fRjB6tma82q/cZCmkFNtfP1jItohjIi+nQ4J0jHiZ+9R
        S0ZYL6OsuJ2zx5DJ+CmCQLtdkmlRPbgeMThy5m8IlFObQdTrnj8ZzVWQss5DQJOd
        KSouWlccw/a3kFgnV2up3OYjJ2i9i4d0EJuNPE1kcQKBgQD9FnAPDlndAOYtBjG1
        ReyEGzYwNoNUe7sqSI+S2UyzZBDneOGOBlBYrTFp3OzMr8bX/v+61e+wtHcZyz6u
        1IO/nLBLnMsTTO+jbVWGaz4Fi7zaPtmxG0LsyyZh2FJu1aUblkoSzBPI+O9oOE+5
        /sJDHfC67hkAX6Gs1+HfcIwXeQKBgQDWbFr9n8bYBde1iX5ubJVE5gTrG60tkacY
        XEhhBlZnVQ07W4WOyRGAvrBCDzUFQXr/PibTchj3k6bC3NIJxlszeeMV2MN6omZC
        zSuZY/lpg5IHl4X6+5jvcQcwyFSW6IF9TMZ+82TAqwu9duzX+J5aEzxkDWLXnNlL
        uidHVZuGlQKBgQCq2AqtHzLqTUEUA6pqg9k1FGlwAlyFG0EtOe4xYx6zukju+FrK
        VNjIA6HnpIr1YXMJO8nFhcVXs3rynpCh1DNblZoscJtlW/ooiBXDt4EWnU3Oxb6O
        H6j9z+UJB84do3rhNIKsTbbNY724zMqE88SPKhbnGPMnnWa2FsUS4BaxgQKBgA3u
        aFMGKIMsjgFLd51xDJm3YCZuW+gUCIk6pbE4GjEIg52RqrHGOo7k1MrV9hnrUTR4
        M0mVpi2fuDv84OCltJM5nhlzRfAX0RESB30l07SZScmYfKn74snbzB3NRkGvxYoA
        jPz+j1M9Sbv7mBPIIXG0wj216PAdTrju1VJ7K2mpAoGBALyF2wsXZZiS5+sAXtRO
        pcCtX+mXt/bOPFP3yqSjcto8XOCSdsTOm/AK8w4gld/9l24tcTC3bcGCnMkgr7gK
        U5gbSFy9iNoLSHwlFN95MfM9GFaWKj+pe+aorglHdLi/ZQzzB7MUEvkfJ7i3QIBn
        aoMwtjSJAFups+vLUC1i7Hyy
        -----END PRIVATE KEY-----
        """
    public static let merchantPublicKey = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0/vhGHzguxl+GZgO8PBo
        Yy1ssIjbgKlRuSPpoxFyVRnCFDt5QVFFzhakyxDtz1I2Pd8vu2R3boEJ8C0f5LdC
        Pk2ND491RwrOMAVK4Qxt9CHYZBkJ/GluMlaZOh2YmzaCSko7Ke3iG7N9M0gccSQs
        pzT6uQU16Izv0qObP04hNS0cMCCo6T4Mym1bh9qbdQXiTbuFm4OuMtqNmlpFdrUt
        R+twTChvv6TNHiC7RdXvWSQJb8pgfHFns8ZwkkWrbBEyOAVm2nCfdJQ8PNmAq2ix
        9rPXxhjeGX/yIiMiD0NgrZWEtIquujKI2Akgumq0g35CujbmnIfTv5+b4QYiORX/
        bQIDAQAB
        -----END PUBLIC KEY-----
        """
    /// Plays WeChat Pay's key pair in the vector tests.
    public static let wechatpayPrivateKey = """
        -----BEGIN PRIVATE KEY-----
        MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDE4jfEO1x2j87E
        r32zdFg6q/29qWZq2DdIRrvtDNzelfrdQI4dXcT62U72In3bEeCALLfDY35nFq5P
        b22zBmMXPV7wbm4wlemPxPdYWNbRlwSNEqel7URD/sClbUpp/baPf+hTUcuwkWUZ
        TGhf8XSHguDvDjW7TxXl659r+xBLllp+MMT2w7SzOhXeksDVNwF4gV6+qvKsAV1p
        U6O34hXODN+ghZDrw78camEGPgVPe8o9udmYHo2/LW2LW2WCZKOGW5iH7jIUvBX/
        HiobaqiGPQV8YcatzhhSSAB0dbVYZPqmfdm6R4iFZx3JsXOkrhLi23vrKMgk81MI
        5t2s9ZHnAgMBAAECggEAANiRl/l2H3Kx8MADfXUcHyRq2Rj6163i9VLyFV94xq9E
        sXt77aRf54DUVgc2UAd21eL05y7TD2sjIWdyxGvCmtb1d9/OZjPYTRKlMKJkSeip
        Ar74LKS+v/Jx4XdJ9Cqi6vruhKBVWVNGm+7RtzFsAfXazl9a27/7PoGrFBiAEwZD
        oGNx7fRi0SxvUKVLrlyvHjqjc0g7SPemFB+XGeLaqMTXj5ES5nNvxJUMquK9vNQH
        Nzf1fqCedsSVOWcvEohOgRAuyxPMq7s0bjDvKjHHRz8coh+ri1OC8W+9/1YHjGSr
        GKMGrcNEUyXEQsC5xF2jDVBsuBTZDhEZ0sDldA94AQKBgQD2nJPFNTQy/FsE+xE9
        4dDZRESLYwr23EjxjswNofuGcqnCaqE2ITj4pPF8h5+QbqeIC/DcQkrHBxlv9yXX
        1ogx/XoOMYFHwrYXLMZbH6YJZW1s6cY/z2imnRUWChygdXvxj0DcBmFSpaOeRowG
        y3GOVmtqk95aQKVftDXUJFFpXwKBgQDMYQC1waMrNKRwojk25fnnAqQGs+oDct8b
        VWBKj8JthJFcHJZ5xMgH53TY6sr7Fn8gsokRh4rIuyBcgDOqqA/dYVjxjkANp/Rk
        00jB9ReleBe0ilTrauQbwU2ctTuM3Z9RW9q0QiFnUMV9leLFT5iu9OnbEAxOJrVS
        vGaq2Ie8eQKBgHNyaVrwxTb5HEMApdmqVPLhGpWGECPwi9VJXA0lv3H5S69P65hD
        hUAhN0ts0i3zH0p5DJCQGCGEGUxpDrY0IB4G45SxaCwH4uaGd3VBI6FSch+CcOR+
        XCdjcfOXWD9lwFgdD+fwtK7UC/yUWgj0RHy1yCNkhbsKeGCNJIXjWplRAoGAIMD/
        AyH4S2lRXTeyYajzpuEWdniI7WqQdOn215w4daLERPXT68nsoM+oO0dNpnXRg+T4
        8JU/WbIbmpd1MElk2X7LaVL50vZyxWHTDDqCQqN/cRCmUWA9FHGjRZUJ6SZvbPOC
        llbu0YbxT5Ig2KxL9OYNQG1O+4tajdrhvUmcX0kCgYBrFTk+5pkmBhntbGfsNWAR
        I/vNzoaXO+Z0yXoaiTRPw14eNwFcaVtRGaKJHtdERjs3cDkgqh1lwCGVkS9Zqi99
        6dCYha8kieiVmRJoetN31FnQkrZ3m6hVZ53rG9z/cg4iaasA1fBBBPm4Q3QFnMij
        zVmIm9VinvgoXmhsWpppYg==
        -----END PRIVATE KEY-----
        """
    public static let wechatpayPublicKey = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxOI3xDtcdo/OxK99s3RY
        Oqv9valmatg3SEa77Qzc3pX63UCOHV3E+tlO9iJ92xHggCy3w2N+ZxauT29tswZj
        Fz1e8G5uMJXpj8T3WFjW0ZcEjRKnpe1EQ/7ApW1Kaf22j3/oU1HLsJFlGUxoX/F0
        h4Lg7w41u08V5eufa/sQS5ZafjDE9sO0szoV3pLA1TcBeIFevqryrAFdaVOjt+IV
        zgzfoIWQ68O/HGphBj4FT3vKPbnZmB6Nvy1ti1tlgmSjhluYh+4yFLwV/x4qG2qo
        hj0FfGHGrc4YUkgAdHW1WGT6pn3ZukeIhWcdybFzpK4S4tt76yjIJPNTCObdrPWR
        5wIDAQAB
        -----END PUBLIC KEY-----
        """
    /// 1024 bits: too short to be accepted.
    public static let shortPrivateKey = """
        -----BEGIN PRIVATE KEY-----
        MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAPu594Gq+p6YE+r7
        i/lRpmdEGlEjrn/OXCLn7ixD5bMAOPlkaJigi54/AeRK07Ahr7Zw+0ynhGjHCInt
        mQQ8C1JM/U1918hMZrwBblfc6kOHiW/EFqi+JMOsv9w/gJD/S3dfzC5UJ65ku/1a
        7wZZdEnbncr9TfHClFVc0j5dIadlAgMBAAECgYEAqc9Pyec/XZEVjqTWTf/okyz7
        29SIOKtKuDlhD/dVkqUJyiMT9DIJPV0ft5NKrjxrPlWFELbIua3acsEXQiYHM81A
        auIdZsGjtp18E8K+Sneh5CNYeT8kPzvDvwrnr3rZBrfXa+EOIvltzM4FntnjeBzb
        KiqKrTh4jOof7CYSmNkCQQD+0cEa5+umYB24/4AL/Tl7JYFxoRFZLe02WiqDmZYA
        x6P8BNpZypuDlIBOs7eQPEh0j/GWi72f+WoAvhYp9cQ7AkEA/OSLP5n1vR2mz688
        /s9WnIbKllgaPWIKrnqR/38zN6FEc295usWO5HBVCUC79rsIr2fFPYxXZJh0xujR
        qn+o3wJAR5XPhOqAVfYMg4srgrK5sjHAIpbYE9CGIk3EQcIk1MVA+Sy31p/Hfnh6
        byGnwNpelHhXqy5IsCdWMy0zdsg3PwJAGjZyPIhv0Udmh/ZpAxxopNbP3t+I8L3d
        z5IC2hHMNELx/mkanAJoOkNufQQJt5xRXSULa8LFODcZO5jcSqjqzwJACYht+OUB
        hgWj8FsL/uZWrTsIyJTpMD874vn0KsgppGadqSwYPhG5Nz27ViLsPWCURbjnRwdy
        Th8VJtB47M7RiQ==
        -----END PRIVATE KEY-----
        """
    /// openssl's signature, with `merchantPrivateKey`, of
    /// `POST\n/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{"mchid":"1900000109"}\n`.
    public static let closeRequestSignature =
        "NP0u55L/tRSGga/rQP/mb5DnBd+rCKJoGoKE8ky4q6O/U70SIexWgWJk0tIVt9rwIX9tX1bow2X1YxMr/YxRQQWIIyL1Txf4IgOHwKdm90ghbPz6rL27E4pZmged5NIlEzzTfNEknVbcg+ZIgizymwi9QeAHW0IWaMCaWI0PFwoarwGEFo/r92XNUczsBaYplLZZYy5Ec1Vwe4jyf6V5V//k38tn3jFq3Jy4ag2fGFWLJpsOcZg8ySKzUPLcXNXn1JSxAm2Ec/7WoQ8SK4TvwJ/cdvMSQA20qSw4Y/Ae3a+QRtPpojI/pqyvPnX51AuPx9vlgcKrf/7Oo9wtYK92hA=="
    /// openssl's signature, with `wechatpayPrivateKey`, of a 204 answer's message
    /// `1554209980\nc5ac7061fccab6bf3e254dcf98995b8c\n\n` (the body line empty).
    public static let emptyAnswerSignature =
        "PeGHOPV+g8rzZHAmo7i/Rus5q+/OgNQTGHdIIqyW/YaVlA4aTocjPtBMZrY+rCgELzKgPc67VgXLVC2jZCqMIS20pKHFkAsg8hUnWq3KICjrjrkF1adI2ECYHOax8EdY2BbttjhmSdxkT2nH9CQL35bpecItnLbywf+76NabqxSIjkGBHMcMLvJ4ndMtSxlmpbgHYPABl/leQ8AUyQvPctbyzo20KOWIiBCBsOuuPJ/+6ih74GGkKgijwoVrXMeroKQvaWgFI0FLl+acdIRkTKFq54s33ZU9k4QU9V9m09dRHugnbYBEzzItxAnuYvpu88wmZXBN0uXQVdfi7DBbJQ=="
}
