// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "wgpm",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "wgpm", targets: ["wgpm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        .systemLibrary(name: "CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Pure: desired + observed state in, actions out. No Foundation, no I/O.
        .target(name: "Planner", swiftSettings: swiftSettings),
        // Planner for `confinementProblem`, the one path rule every definition path must pass.
        .target(name: "Catalog", dependencies: [
            "Planner",
            .product(name: "Crypto", package: "swift-crypto"),
        ], resources: [.copy("Resources/support-files.json"), .copy("Resources/knowledge")],
                swiftSettings: swiftSettings),
        .target(name: "Manifest", dependencies: [
            "Catalog",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: swiftSettings),
        .target(name: "State", dependencies: [
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: swiftSettings),
        .target(name: "HubClient", dependencies: [
            "CCurl", "Planner", "State",
        ], swiftSettings: swiftSettings),
        .target(name: "Inventory", dependencies: [
            "State", "Planner",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: swiftSettings),
        .target(name: "Reuse", dependencies: [
            "Planner", "State", "Inventory",
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: swiftSettings),
        .target(name: "Rendering", dependencies: ["Planner"], swiftSettings: swiftSettings),
        .target(name: "Reconciler", dependencies: [
            "Planner", "Catalog", "Manifest", "State", "HubClient", "Inventory", "Rendering", "Reuse",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: swiftSettings),
        .target(name: "Executor", dependencies: [
            "Planner", "State", "HubClient", "Inventory",
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "wgpm", dependencies: [
            "Reconciler", "Executor", "Reuse", "Catalog", "Manifest", "Planner", "Rendering", "State", "HubClient",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),
        // Parsers of wgpm's input files under libFuzzer (scripts/fuzz.sh builds it with -DWGPM_FUZZ);
        // the normal build makes a replayer of inputs: wgpm-fuzz FORMAT FILE|DIR…
        .executableTarget(name: "wgpm-fuzz", dependencies: ["Manifest", "Planner", "Reconciler", "Rendering"], swiftSettings: swiftSettings),
        .target(name: "TestSupport", dependencies: ["Inventory", "HubClient"], path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "PlannerTests", dependencies: ["Planner"], swiftSettings: swiftSettings),
        .testTarget(name: "CatalogTests", dependencies: ["Catalog"], swiftSettings: swiftSettings),
        .testTarget(name: "ManifestTests", dependencies: ["Manifest", "Catalog"], swiftSettings: swiftSettings),
        .testTarget(name: "HubClientTests", dependencies: ["HubClient", "State", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "InventoryTests", dependencies: ["Inventory", "State", "Planner", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ExecutorTests", dependencies: ["Executor", "HubClient", "State", "Planner", "Inventory", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ReuseTests", dependencies: ["Reuse", "State", "Planner", "Inventory", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "EndToEndTests", dependencies: ["Reconciler", "TestSupport", "wgpm"], swiftSettings: swiftSettings),
    ]
)
