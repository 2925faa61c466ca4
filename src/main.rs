fn main() {
    println!("tagwatch: not yet implemented");
}
