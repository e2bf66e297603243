// swift-tools-version:6.1
// libFuzzer targets for the response parser and the signature check. Not part of the main
// build: run scripts/fuzz, which builds this package with -sanitize=fuzzer.
import PackageDescription

let package = Package(
    name: "closeorderd-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzResponses",
            dependencies: [.product(name: "WeChatPay", package: "main")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
