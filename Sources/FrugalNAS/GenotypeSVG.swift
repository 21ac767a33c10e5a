import FrugalModels

/// SVG drawings of derived cells and simple charts.
public enum GenotypeSVG {
    /// Both cells of `genotype`, normal above reduction, as one SVG document.
    public static func draw(_ genotype: Genotype, title: String = "") -> String {
        let w = 760, h = 300
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(2 * h + 30)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        if !title.isEmpty { s += "<text x=\"10\" y=\"18\" font-size=\"14\">\(escape(title))</text>\n" }
        s += cell(genotype.normal, concat: genotype.normalConcat, steps: genotype.steps, name: "normal cell", y0: 30, width: w, height: h)
        s += cell(genotype.reduce, concat: genotype.reduceConcat, steps: genotype.steps, name: "reduction cell", y0: 30 + h, width: w, height: h)
        return s + "</svg>\n"
    }

    static func escape(_ t: String) -> String {
        t.replacingAll("&", "&amp;").replacingAll("<", "&lt;").replacingAll(">", "&gt;")
    }

    static func colour(_ op: DARTSOp) -> String {
        switch op {
        case .none: return "#999999"
        case .maxPool3x3: return "#1f77b4"
        case .avgPool3x3: return "#17becf"
        case .skipConnect: return "#7f7f7f"
        case .sepConv3x3: return "#d62728"
        case .sepConv5x5: return "#ff7f0e"
        case .dilConv3x3: return "#2ca02c"
        case .dilConv5x5: return "#9467bd"
        }
    }

    static func cell(_ edges: [GenotypeEdge], concat: [Int], steps: Int, name: String, y0: Int, width: Int, height: Int) -> String {
        // Inputs on the left, intermediate nodes in a staggered column layout, output on the right.
        var pos: [Int: (Double, Double)] = [:]
        pos[0] = (60, Double(y0) + Double(height) * 0.3)
        pos[1] = (60, Double(y0) + Double(height) * 0.75)
        for i in 0..<steps {
            let x = 190 + Double(i) * Double(width - 320) / Double(max(steps - 1, 1))
            let y = Double(y0) + Double(height) * (i % 2 == 0 ? 0.35 : 0.65)
            pos[2 + i] = (x, y)
        }
        let out = (Double(width - 50), Double(y0) + Double(height) * 0.5)
        var s = "<text x=\"10\" y=\"\(y0 + 16)\" font-weight=\"bold\">\(name)</text>\n"
        for c in concat { let p = pos[c]!; s += line(p, out, "#bbbbbb", dash: true) }
        var counts: [String: Int] = [:]
        for e in edges {
            guard let a = pos[e.from], let b = pos[e.node] else { continue }
            let key = "\(e.from)-\(e.node)"
            let k = counts[key, default: 0]; counts[key] = k + 1
            s += line(a, b, colour(e.op), dash: false)
            let mx = (a.0 + b.0) / 2, my = (a.1 + b.1) / 2 - 4 + Double(k) * 12
            s += "<text x=\"\(Int(mx))\" y=\"\(Int(my))\" text-anchor=\"middle\" fill=\"\(colour(e.op))\">\(e.op.rawValue)</text>\n"
        }
        let labels = [0: "c_{k-2}", 1: "c_{k-1}"]
        for (n, p) in pos.sorted(by: { $0.key < $1.key }) {
            let fill = n < 2 ? "#d9ead3" : "#cfe2f3"
            s += "<ellipse cx=\"\(Int(p.0))\" cy=\"\(Int(p.1))\" rx=\"28\" ry=\"15\" fill=\"\(fill)\" stroke=\"black\"/>\n"
            s += "<text x=\"\(Int(p.0))\" y=\"\(Int(p.1) + 4)\" text-anchor=\"middle\">\(labels[n] ?? String(n - 2))</text>\n"
        }
        s += "<ellipse cx=\"\(Int(out.0))\" cy=\"\(Int(out.1))\" rx=\"28\" ry=\"15\" fill=\"#fce5cd\" stroke=\"black\"/>\n"
        s += "<text x=\"\(Int(out.0))\" y=\"\(Int(out.1) + 4)\" text-anchor=\"middle\">c_{k}</text>\n"
        return s
    }

    static func line(_ a: (Double, Double), _ b: (Double, Double), _ colour: String, dash: Bool) -> String {
        "<line x1=\"\(Int(a.0 + 28))\" y1=\"\(Int(a.1))\" x2=\"\(Int(b.0 - 28))\" y2=\"\(Int(b.1))\" stroke=\"\(colour)\" stroke-width=\"\(dash ? 1 : 2)\"\(dash ? " stroke-dasharray=\"4,3\"" : "")/>\n"
    }

    /// A grouped bar chart: one group per row label, one bar per series (values in [0, 1]).
    public static func barChart(title: String, groups: [String], series: [String], values: [[Double]]) -> String {
        let w = 120 + groups.count * (series.count * 22 + 30), h = 300, base = 250.0, scale = 200.0
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"10\" y=\"18\" font-size=\"14\">\(escape(title))</text>\n"
        s += "<line x1=\"60\" y1=\"\(Int(base))\" x2=\"\(w - 10)\" y2=\"\(Int(base))\" stroke=\"black\"/>\n"
        for t in stride(from: 0.0, through: 1.0, by: 0.25) {
            let y = Int(base - t * scale)
            s += "<text x=\"55\" y=\"\(y + 4)\" text-anchor=\"end\">\(Int(t * 100))%</text>\n<line x1=\"60\" y1=\"\(y)\" x2=\"\(w - 10)\" y2=\"\(y)\" stroke=\"#eeeeee\"/>\n"
        }
        for (g, gname) in groups.enumerated() {
            let gx = 70 + g * (series.count * 22 + 30)
            for (k, _) in series.enumerated() {
                let v = max(0, min(1, g < values.count && k < values[g].count ? values[g][k] : 0))
                let x = gx + k * 22
                s += "<rect x=\"\(x)\" y=\"\(Int(base - v * scale))\" width=\"18\" height=\"\(Int(v * scale))\" fill=\"\(palette[k % palette.count])\"/>\n"
                s += "<text x=\"\(x + 9)\" y=\"\(Int(base - v * scale) - 3)\" text-anchor=\"middle\" font-size=\"9\">\(Int((v * 1000).rounded()) / 10)</text>\n"
            }
            s += "<text x=\"\(gx + series.count * 11)\" y=\"\(Int(base) + 15)\" text-anchor=\"middle\">\(escape(gname))</text>\n"
        }
        for (k, name) in series.enumerated() {
            s += "<rect x=\"\(70 + k * 90)\" y=\"\(h - 22)\" width=\"10\" height=\"10\" fill=\"\(palette[k % palette.count])\"/><text x=\"\(84 + k * 90)\" y=\"\(h - 13)\">\(escape(name))</text>\n"
        }
        return s + "</svg>\n"
    }
}

extension String {
    func replacingAll(_ a: String, _ b: String) -> String { split(separator: Substring(a), omittingEmptySubsequences: false).joined(separator: b) }
}
